"""Study design: which subsets a study trains on, as small JSON-ready specs, and how each is realised.

A spec names a subset; :func:`realise` makes it from the pool. They are separate so that a flow can make
every spec first (cheap, deterministic, a key per spec to resume by), then map the realisation, scoring and
training of each spec over workers with nothing larger than the spec travelling.

Kinds of subsets, per regime and size ``k`` (all of exactly ``k`` rows, and class-balanced in the
``balanced`` regime, so that differences in accuracy are differences in *which* rows, not how many):

``max``    the greedy maximiser of an objective (:func:`worth.select`; ``quotas="balanced"`` when balanced).
``min``    its greedy minimiser (:func:`worth.appraisal.minimise.greedy_minimise`): the most redundant subset.
``mix``    the maximiser's greedy prefix of ``round((1 − f)·k)`` picks, completed by ``random`` rows or by the
           greedy-minimising completion (``min``); in the balanced regime the completion restores the
           maximiser's class counts. As ``f`` grows the score slides from the maximiser's towards random's
           (or the minimiser's): the range between is spanned at fixed size, balance and budget.
``random`` uniform (``fixed``, ``budget``) or class-balanced (``balanced``) random rows.

``coreset`` one row of the coreset table (regime ``coreset``, ``fraction`` = share of the pool, ``objective`` =
           the selection): ``uniform`` or ``balanced-random`` rows (a new draw per seed), ``full`` (the whole
           pool), or the class-balanced maximiser of a registered objective (``herding``, ``k-center``, or a
           study objective), trained for ``epochs`` passes under each of the table's seeds.

``fixed`` and ``budget`` draw the same subsets (their training differs: epochs against a fixed number of
steps), so a realisation cache shared by both regimes (:attr:`SubsetSpec.subset_key`) selects each once.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import worth

from .config import StudyConfig, check_holdout_fraction
from .minimise import greedy_minimise

KINDS = ("max", "min", "mix", "random", "coreset")
#: Coreset selections that are not a registered objective's maximiser (:data:`worth.appraisal.config.BASELINES`).
DRAWN = ("uniform", "balanced-random")
FULL = "full"


@dataclass(frozen=True)
class SubsetSpec:
    """One subset of a study: what to select, and the regime it is trained under.

    Attributes
    ----------
    kind : {"max", "min", "mix", "random"}
    objective : str or None
        The objective optimised (``None`` for random subsets).
    k : int
    regime : {"fixed", "balanced", "budget"}
    seed : int
        Training seed; also the tie-break / filler / draw seed of the selection.
    fraction : float
        Share of the maximiser swapped out (mixtures only, else 0).
    filler : str or None
        ``"random"`` or ``"min"`` (mixtures only).
    params : dict
        The objective's parameters.
    sample : int or None
        Minimiser candidates per step (``min`` and ``mix``/``min`` only).
    """

    kind: str
    objective: str | None
    k: int
    regime: str
    seed: int
    fraction: float = 0.0
    filler: str | None = None
    params: dict = field(default_factory=dict)
    sample: int | None = None

    @property
    def balanced(self) -> bool:
        """Selected under class quotas: the ``balanced`` regime, and every coreset selection but ``uniform``
        and the full pool."""
        if self.kind == "coreset":
            return self.objective not in ("uniform", FULL)
        return self.regime == "balanced"

    @property
    def name(self) -> str:
        """``OBJECTIVE-kK-REGIME-sSEED`` (``vendi-k100-balanced-s0``, ``min-vendi-…``, ``mix50-vendi-random-…``,
        ``random-k100-fixed-s3``): the run name in MLflow."""
        tail = f"k{self.k}-{self.regime}-s{self.seed}"
        if self.kind == "coreset":
            share = "" if self.objective == FULL else f"{self.fraction * 100:g}"
            return f"coreset{share}-{self.objective}-k{self.k}-s{self.seed}"
        if self.kind == "max":
            return f"{self.objective}-{tail}"
        if self.kind == "min":
            return f"min-{self.objective}-{tail}"
        if self.kind == "mix":
            return f"mix{round(self.fraction * 100)}-{self.objective}-{self.filler}-{tail}"
        return f"random-{tail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubsetSpec":
        return cls(**data)

    @property
    def key(self) -> str:
        """A deterministic 16-hex key of every field (the same spec always has the same key)."""
        return _digest(self.to_dict())

    @property
    def subset_key(self) -> str:
        """Key of the selected rows alone: ``fixed`` and ``budget`` specs that select alike share it."""
        data = {**self.to_dict(), "regime": "balanced" if self.balanced else "any"}
        if self.kind == "coreset" and self.objective not in DRAWN:  # deterministic: one subset for every seed
            data["seed"] = None
        return _digest(data)


def _digest(data: dict) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def coreset_k(fraction: float, n_pool: int) -> int:
    """Rows of a coreset at ``fraction`` of a pool of ``n_pool`` rows (at least 2)."""
    return max(2, round(fraction * n_pool))


def coreset_specs(config: StudyConfig, n_pool: int) -> list[SubsetSpec]:
    """The coreset table's subsets (empty without a ``coreset`` section): fraction, then selection, then seed."""
    section = config.coreset
    if section is None:
        return []
    selections = [(b, {}) for b in section["baselines"]]
    if section["maximisers"]:
        selections += [(name, params) for name, params in config.objectives.items()
                       if name not in section["baselines"]]
    specs = [SubsetSpec("coreset", name, coreset_k(f, n_pool), "coreset", seed, fraction=f, params=params)
             for f in section["fractions"] for name, params in selections for seed in section["seeds"]]
    if section["full"]:
        specs += [SubsetSpec("coreset", FULL, n_pool, "coreset", seed, fraction=1.0) for seed in section["seeds"]]
    return specs


def make_specs(config: StudyConfig, n_pool: int | None = None) -> list[SubsetSpec]:
    """Every subset of the study, in a fixed order (regime, k, then maximisers, minimisers, mixtures, random),
    then the coreset table's (which need the pool's size ``n_pool``)."""
    if config.coreset is not None and n_pool is None:
        raise ValueError("the config has a coreset section, whose subsets are shares of the pool: pass n_pool=.")
    specs: list[SubsetSpec] = []
    for regime in config.regimes:
        for k in config.k:
            for seed in config.seeds:
                for name, params in config.objectives.items():
                    specs.append(SubsetSpec("max", name, k, regime, seed, params=params))
                    if config.minimisers:
                        specs.append(SubsetSpec("min", name, k, regime, seed, params=params,
                                                sample=config.minimiser_sample))
                    for filler in config.fillers:
                        for f in config.mixture_fractions:
                            specs.append(SubsetSpec("mix", name, k, regime, seed, fraction=float(f), filler=filler,
                                                    params=params,
                                                    sample=config.minimiser_sample if filler == "min" else None))
            specs.extend(SubsetSpec("random", None, k, regime, s) for s in range(config.random_subsets))
    return specs + (coreset_specs(config, n_pool) if n_pool is not None else [])


def check_design(config: StudyConfig, labels) -> None:
    """Refuse a design the pool cannot serve, before any selection: k beyond the pool, or (balanced) a class."""
    labels = np.asarray(labels)
    n = labels.shape[0]
    big = [k for k in config.k if k > n]
    if big:
        raise ValueError(f"k={big} exceeds the pool's {n} rows; lower k.")
    classes, counts = np.unique(labels, return_counts=True)
    if config.coreset is not None:
        for f in config.coreset["fractions"]:
            k = coreset_k(f, n)
            need = math.ceil(k / classes.size)
            if k >= n or counts.min() < need:
                raise ValueError(f"coreset fraction {f} ({k} rows, class-balanced) needs {need} rows of every class "
                                 f"of the {n}-row pool, but class {classes[np.argmin(counts)].item()} has "
                                 f"{counts.min()}; lower coreset.fractions.")
    if "balanced" in config.regimes:
        for k in config.k:
            need = math.ceil(k / classes.size)
            if counts.min() < need:
                small = classes[np.argmin(counts)].item()
                raise ValueError(f"k={k} in the balanced regime needs {need} rows of every class, but class {small} "
                                 f"has {counts.min()}; lower k or drop the 'balanced' regime.")


def holdout_split(labels, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """A stratified, seeded held-out mask: ``True`` for the rows held out.

    Each class holds out ``round(fraction · n_c)`` rows, at least one and at most ``n_c − 1`` when the class
    has two rows or more (a class of one row stays in the pool): every class is evaluated and every class can
    be selected. The same labels, fraction and seed give the same mask.
    """
    fraction = check_holdout_fraction(fraction)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size < 2:
        raise ValueError(f"labels must be a 1-D array of at least 2 rows; got shape {labels.shape}.")
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.size, dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if rows.size < 2:
            continue
        take = min(max(1, round(fraction * rows.size)), rows.size - 1)
        mask[rng.choice(rows, size=take, replace=False)] = True
    return mask


def balanced_counts(labels, k: int, rng: np.random.Generator) -> dict:
    """Class → rows for a class-balanced subset of ``k``: ``k // C`` each, the remainder to random classes."""
    classes = np.unique(labels)
    counts = {c.item(): k // classes.size for c in classes}
    for c in rng.choice(classes, size=k % classes.size, replace=False):
        counts[c.item()] += 1
    return counts


def _draw(rng, labels, exclude: np.ndarray, counts: dict | None, total: int) -> np.ndarray:
    """``total`` random rows not in ``exclude``; ``counts`` (class → rows) when the draw must be balanced."""
    free = np.ones(labels.shape[0], dtype=bool)
    free[exclude] = False
    if counts is None:
        return rng.choice(np.flatnonzero(free), size=total, replace=False)
    parts = [rng.choice(np.flatnonzero(free & (labels == c)), size=v, replace=False) for c, v in counts.items() if v]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _maximiser(spec: SubsetSpec, X, labels, cache: dict | None) -> np.ndarray:
    key = ("max", spec.objective, json.dumps(spec.params, sort_keys=True), spec.k, spec.balanced)
    if cache is not None and key in cache:
        return cache[key]
    sel = worth.select(X, spec.k, spec.objective, labels=labels, quotas="balanced" if spec.balanced else None,
                       **spec.params)
    idx = np.asarray(sel.indices, dtype=np.int64)
    if cache is not None:
        cache[key] = idx
    return idx


def random_subset(spec: SubsetSpec, labels, rng: np.random.Generator) -> np.ndarray:
    """A random spec's rows: uniform, or class-balanced in the balanced regime."""
    counts = balanced_counts(labels, spec.k, rng) if spec.balanced else None
    return np.asarray(_draw(rng, labels, np.zeros(0, dtype=np.int64), counts, spec.k), dtype=np.int64)


def realise(spec: SubsetSpec, X, labels, cache: dict | None = None) -> np.ndarray:
    """The rows of ``spec``'s subset (pick order for ``max``/``min``; prefix then completion for ``mix``).

    ``cache`` (any dict) keeps maximisers between the mixtures that share them; pass the same dict to every
    call in one process.
    """
    labels = np.asarray(labels)
    rng = spec_rng(spec)
    if spec.kind == "max":
        return _maximiser(spec, X, labels, cache)
    if spec.kind == "min":
        return greedy_minimise(X, spec.k, spec.objective, labels=labels,
                               quotas="balanced" if spec.balanced else None, sample=spec.sample, seed=spec.seed,
                               **spec.params)
    if spec.kind == "random":
        return random_subset(spec, labels, rng)
    if spec.kind == "coreset":
        return coreset_subset(spec, labels, rng, lambda: _maximiser(spec, X, labels, cache))
    if spec.kind != "mix":
        raise ValueError(f"spec.kind={spec.kind!r} is unknown; one of {list(KINDS)}.")
    return complete_mixture(spec, _maximiser(spec, X, labels, cache), X, labels, rng)


def coreset_subset(spec: SubsetSpec, labels, rng: np.random.Generator, maximiser) -> np.ndarray:
    """A coreset spec's rows: drawn (``uniform``, ``balanced-random``), the whole pool, or ``maximiser()``
    (the selection's class-balanced greedy maximiser, from :func:`worth.select`)."""
    if spec.objective == "uniform":
        return np.asarray(_draw(rng, labels, np.zeros(0, dtype=np.int64), None, spec.k), dtype=np.int64)
    if spec.objective == "balanced-random":
        counts = balanced_counts(labels, spec.k, rng)
        return np.asarray(_draw(rng, labels, np.zeros(0, dtype=np.int64), counts, spec.k), dtype=np.int64)
    if spec.objective == FULL:
        return np.arange(labels.shape[0], dtype=np.int64)
    return np.asarray(maximiser(), dtype=np.int64)


def spec_rng(spec: SubsetSpec) -> np.random.Generator:
    """The seeded generator of a spec's random draws (random subsets, mixtures' random fillers)."""
    return np.random.default_rng([spec.seed, spec.k, int(spec.balanced), round(spec.fraction * 100),
                                  KINDS.index(spec.kind)])


def complete_mixture(spec: SubsetSpec, best: np.ndarray, X, labels, rng: np.random.Generator) -> np.ndarray:
    """A mixture from its maximiser's picks ``best``: the prefix of ``1 − f``, then the filler's completion."""
    keep = best[: round((1 - spec.fraction) * spec.k)]
    need = spec.k - keep.size
    deficits = None
    if spec.balanced:
        target = {c.item(): int(v) for c, v in zip(*np.unique(labels[best], return_counts=True))}
        have = {c.item(): int(v) for c, v in zip(*np.unique(labels[keep], return_counts=True))}
        deficits = {c: v - have.get(c, 0) for c, v in target.items()}
    if spec.filler == "random":
        fill = _draw(rng, labels, keep, deficits, need)
    elif spec.filler == "min":
        fill = greedy_minimise(X, need, spec.objective, labels=labels, quotas=deficits, init=keep,
                               sample=spec.sample, seed=spec.seed, **spec.params)
    else:
        raise ValueError(f"spec.filler={spec.filler!r} is unknown; pass 'random' or 'min'.")
    return np.concatenate([keep, np.asarray(fill, dtype=np.int64)])
