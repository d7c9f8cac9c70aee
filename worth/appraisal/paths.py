"""Greedy paths computed once and shared: every maximiser, minimiser and mixture of a study from stored paths.

:func:`worth.appraisal.design.realise` (the reference) selects per spec, with a cache that lives in one
process: a flow mapping specs over workers selects the same maximiser once per worker and per mixture, and
every ``k`` from scratch. But a greedy run does not depend on how many picks are asked of it — without
quotas the first ``k`` picks of a run to ``K ≥ k`` *are* the run to ``k`` (lazy and full greedy alike: the
picks depend only on the gains so far; the minimiser's seeded draws are made step by step too). So a study
needs one path per

``(kind, objective, parameters[, seed, sample])`` unconstrained (``fixed`` and ``budget``), at its largest k,

and one per balanced ``k`` (``quotas="balanced"`` is ``ceil(k/C)`` per class, so a balanced run at ``K`` may
fill a class past what the run at ``k`` may take: no prefix property there). :func:`plan_paths` lists them.
They are computed in *units* (:func:`path_units`): all paths of one objective (and, for a minimiser, seed and
sample) in one branching run, because a balanced run makes the unconstrained run's very picks until a class
reaches its quota, and leaves it there (:mod:`worth.appraisal.branches`, :func:`worth.appraisal.minimise.minimiser_family`).
:func:`realise_unit` computes one (a flow maps them over workers, the pool loaded once per worker),
:func:`subset_from_paths` makes any spec's rows from the stored paths (a maximiser or minimiser is a prefix;
a mixture is its maximiser's prefix completed by its filler, :func:`worth.appraisal.design.complete_mixture`;
a random subset its seeded draw; a coreset selection its balanced maximiser's path, shared with a
balanced study maximiser of the same k), and :func:`realise_subsets` chains them in one process. The equality
tests (``tests/appraisal/test_fast_path.py``, ``tests/study/test_study_fast_path.py``) check every spec's rows
against :func:`realise`'s.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import worth

from .design import DRAWN, FULL, SubsetSpec, complete_mixture, coreset_subset, random_subset, spec_rng
from ..facility.lists import share_first_pass
from .minimise import greedy_minimise, unit_rows_kept


@dataclass(frozen=True)
class PathKey:
    """One greedy path: a maximiser (``kind="max"``) or minimiser (``"min"``) of an objective.

    ``balanced_k`` is the k of a balanced run (``None``: unconstrained, shared by every k as prefixes);
    ``seed`` and ``sample`` matter to minimisers only (``None`` for maximisers, which are deterministic).
    """

    kind: str
    objective: str
    params: str  # the objective's parameters as sorted JSON (hashable)
    balanced_k: int | None = None
    seed: int | None = None
    sample: int | None = None

    @property
    def name(self) -> str:
        regime = f"balanced-k{self.balanced_k}" if self.balanced_k else "any"
        tail = "" if self.kind == "max" else f"-s{self.seed}-n{self.sample}"
        return f"{self.kind}-{self.objective}-{regime}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PathKey":
        return cls(**data)


def path_key(spec: SubsetSpec) -> PathKey | None:
    """The path a spec is cut from (a mixture: its maximiser's), or ``None`` for a random subset."""
    if spec.kind == "random" or (spec.kind == "coreset" and spec.objective in (*DRAWN, FULL)):
        return None
    params = json.dumps(spec.params, sort_keys=True)
    balanced_k = spec.k if spec.balanced else None
    if spec.kind == "min":
        return PathKey("min", spec.objective, params, balanced_k, spec.seed, spec.sample)
    return PathKey("max", spec.objective, params, balanced_k)


def plan_paths(specs: list[SubsetSpec]) -> dict[PathKey, int]:
    """Every path the specs need and its length (the largest k cut from it), in first-seen order."""
    plan: dict[PathKey, int] = {}
    for spec in specs:
        key = path_key(spec)
        if key is not None:
            plan[key] = max(plan.get(key, 0), spec.k)
    return plan


def realise_path(key: PathKey, length: int, X, labels) -> np.ndarray:
    """The path's first ``length`` picks (the call :func:`worth.appraisal.design.realise` makes for a spec)."""
    labels = np.asarray(labels)
    params = json.loads(key.params)
    quotas = "balanced" if key.balanced_k else None
    if key.balanced_k is not None and length != key.balanced_k:
        raise ValueError(f"a balanced path is cut at its own k ({key.balanced_k}), not {length}.")
    if key.kind == "max":
        sel = worth.select(X, length, key.objective, labels=labels, quotas=quotas, **params)
        return np.asarray(sel.indices, dtype=np.int64)
    if key.kind == "min":
        return greedy_minimise(X, length, key.objective, labels=labels, quotas=quotas, sample=key.sample,
                               seed=key.seed, **params)
    raise ValueError(f"key.kind={key.kind!r} is unknown; pass 'max' or 'min'.")


def path_units(plan: dict[PathKey, int]) -> list[dict[str, Any]]:
    """The plan's paths grouped into branching runs (JSON-ready): one per maximiser objective and parameters,
    one per minimiser objective, parameters, seed and sample — its unconstrained length (``None``: not
    needed) and its balanced ``k`` (:func:`worth.appraisal.branches.maximiser_family`,
    :func:`worth.appraisal.minimise.minimiser_family`: every balanced run leaves the unconstrained trunk
    where a class fills, so the picks they share are made once)."""
    units: dict[tuple, dict[str, Any]] = {}
    for key, length in plan.items():
        unit = units.setdefault((key.kind, key.objective, key.params, key.seed, key.sample), {
            "kind": key.kind, "objective": key.objective, "params": key.params, "seed": key.seed,
            "sample": key.sample, "unconstrained": None, "balanced": []})
        if key.balanced_k is None:
            unit["unconstrained"] = int(length)
        else:
            unit["balanced"] = sorted({*unit["balanced"], int(key.balanced_k)})
    return list(units.values())


def unit_keys(unit: dict[str, Any]) -> list[PathKey]:
    """The paths a unit of :func:`path_units` makes."""
    keys = [PathKey(unit["kind"], unit["objective"], unit["params"], k, unit["seed"], unit["sample"])
            for k in unit["balanced"]]
    return keys + ([PathKey(unit["kind"], unit["objective"], unit["params"], None, unit["seed"], unit["sample"])]
                   if unit["unconstrained"] else [])


def realise_unit(unit: dict[str, Any], X, labels) -> dict[PathKey, np.ndarray]:
    """Every path of a unit of :func:`path_units`, by one branching run: ``PathKey → picks``."""
    from .branches import maximiser_family
    from .minimise import minimiser_family

    params = json.loads(unit["params"])
    if unit["kind"] == "max":
        got = maximiser_family(X, labels, unit["objective"], params, unconstrained=unit["unconstrained"],
                               balanced=unit["balanced"])
    elif unit["kind"] == "min":
        got = minimiser_family(X, labels, unit["objective"], params, seed=unit["seed"], sample=unit["sample"],
                               unconstrained=unit["unconstrained"], balanced=unit["balanced"])
    else:
        raise ValueError(f"unit kind {unit['kind']!r} is unknown; 'max' or 'min'.")
    return {PathKey(unit["kind"], unit["objective"], unit["params"], k, unit["seed"], unit["sample"]): picks
            for k, picks in got.items()}


def realise_paths(plan: dict[PathKey, int], X, labels) -> dict[PathKey, np.ndarray]:
    """Every path of ``plan`` (:func:`plan_paths`), in this process: one branching run per unit
    (:func:`path_units`), facility location's states over the pool sharing one first pass
    (:func:`worth.facility.lists.share_first_pass`)."""
    out: dict[PathKey, np.ndarray] = {}
    with share_first_pass(), unit_rows_kept(X):
        for unit in path_units(plan):
            out.update(realise_unit(unit, X, labels))
    return {key: out[key][:length] for key, length in plan.items()}


def subset_from_paths(spec: SubsetSpec, paths: dict[PathKey, np.ndarray], X, labels) -> np.ndarray:
    """The rows of ``spec`` from the stored paths: equal to :func:`worth.appraisal.design.realise`'s."""
    labels = np.asarray(labels)
    rng = spec_rng(spec)
    if spec.kind == "random":
        return random_subset(spec, labels, rng)
    if spec.kind == "coreset":
        return coreset_subset(spec, labels, rng, lambda: paths[path_key(spec)][:spec.k])
    path = paths[path_key(spec)]
    if path.size < spec.k:
        raise ValueError(f"the stored path {path_key(spec).name} has {path.size} picks; {spec.name} needs {spec.k}.")
    best = np.asarray(path[:spec.k], dtype=np.int64)
    if spec.kind in ("max", "min"):
        return best
    return complete_mixture(spec, best, X, labels, rng)


def realise_subsets(specs: list[SubsetSpec], X, labels) -> dict[str, np.ndarray]:
    """``subset_key → rows`` of every distinct subset of ``specs``, each path computed once."""
    with share_first_pass(), unit_rows_kept(X):
        paths = realise_paths(plan_paths(specs), X, labels)
        out: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.subset_key not in out:
                out[spec.subset_key] = subset_from_paths(spec, paths, X, labels)
    return out


# -- what each path and completion costs, for packing them into balanced jobs ------------------------------
_SPECTRAL = ("vendi", "vendi-pool", "entropy", "logdet", "power", "hybrid")


def _spectral_steps(start: int, stop: int, m: int) -> float:
    """``Σ m·min(s, m)²`` over the picks ``start < s ≤ stop``: the rank-one eigen-updates' work."""
    s = np.arange(start + 1, stop + 1, dtype=np.float64)
    return float(m * np.sum(np.minimum(s, m) ** 2))


def path_cost(key: PathKey, length: int, n: int, m: int) -> float:
    """A rough estimate of a path's work (multiply–adds), to balance jobs; only the ratios matter.

    Spectral: the eigen-updates (a maximiser also evaluates its lazy candidates: twice as much). Dense facility
    location: its first pass (``n²·m``, shared by the states of a job) and, per pick, a gain query against the
    pool (a maximiser's lazy queries early in the run cost a few passes more). Herding, k-center: a pass over
    the pool per pick. The scaling law: counts.
    """
    if key.objective in _SPECTRAL:
        return _spectral_steps(0, length, m) * (2.0 if key.kind == "max" else 1.0)
    if key.objective == "facility-location":
        return (3.0 * n * n * m if key.kind == "max" else 0.0) + length * (key.sample or 64) * n * m * 0.5
    if key.objective in ("herding", "k-center"):
        return float(length) * n * m
    return float(length) * n


def unit_cost(unit: dict[str, Any], n: int, m: int) -> float:
    """A rough estimate of a branching run's work (see :func:`path_cost`): its longest path, and half of each
    other one (the part past where it leaves the trunk)."""
    keys = ([PathKey(unit["kind"], unit["objective"], unit["params"], None, unit["seed"], unit["sample"])]
            if unit["unconstrained"] else [])
    lengths = [unit["unconstrained"]] if unit["unconstrained"] else []
    for k in unit["balanced"]:
        keys.append(PathKey(unit["kind"], unit["objective"], unit["params"], k, unit["seed"], unit["sample"]))
        lengths.append(k)
    costs = sorted((path_cost(key, length, n, m) for key, length in zip(keys, lengths)), reverse=True)
    if unit["objective"] == "facility-location" and unit["kind"] == "max":
        costs = [costs[0]] + [c - 3.0 * n * n * m for c in costs[1:]]  # one first pass
    return costs[0] + 0.5 * sum(costs[1:]) if costs else 0.0


def fill_cost(spec: SubsetSpec, n: int, m: int) -> float:
    """A rough estimate of a minimiser-completed mixture's work (see :func:`path_cost`)."""
    keep = round((1 - spec.fraction) * spec.k)
    if spec.objective in _SPECTRAL:
        return _spectral_steps(keep, spec.k, m) + 9.0 * m ** 3
    if spec.objective == "facility-location":
        return (spec.k - keep) * (spec.sample or 64) * n * m * 0.2
    return float(spec.k - keep) * n
