"""The study's configuration: one frozen dataclass, read from ``study.yaml``, checked before any work starts.

Unknown keys are refused (a misspelt ``mixture_fraction`` silently ignored would run a different study than
the one the user wrote), and every objective name and parameter goes through the registry
(:func:`worth.get_objective`), so a typo fails in a second, not after an hour of selection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import worth

from ..train.config import TrainConfig

#: The study.yaml keys that are training keys (TrainConfig's fields but ``seed``: each subset has its own).
TRAIN_KEYS = tuple(name for name in TrainConfig.fields() if name != "seed")

REGIMES = ("fixed", "balanced", "budget")
FILLERS = ("random", "min")
#: Coreset baselines (besides each objective's maximiser and the full pool): what users pick instead.
BASELINES = ("uniform", "balanced-random", "herding", "k-center")
_CORESET_KEYS = ("fractions", "seeds", "baselines", "maximisers", "full")


def check_coreset(section) -> dict | None:
    """The ``coreset:`` section, normalised: ``fractions`` (shares of the pool in (0, 1)), ``seeds`` (training
    seeds: a count or a list), ``baselines`` (of :data:`BASELINES`), ``maximisers`` (each objective's balanced
    maximiser, default true), ``full`` (the whole pool, default true). ``None`` stays ``None`` (no table)."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"coreset must be a mapping, e.g. coreset: {{fractions: [0.01, 0.05, 0.1], seeds: 5}}; "
                         f"got {section!r}.")
    unknown = sorted(set(section) - set(_CORESET_KEYS))
    if unknown:
        raise ValueError(f"coreset: key {unknown[0]!r} is unknown; the allowed keys are: {', '.join(_CORESET_KEYS)}.")
    fractions = section.get("fractions", [0.01, 0.05, 0.1])
    fractions = list(fractions) if isinstance(fractions, (list, tuple)) else [fractions]
    if not fractions or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1
                            for f in fractions):
        raise ValueError(f"coreset.fractions={fractions} must be shares of the pool in (0, 1), e.g. [0.01, 0.05, 0.1] "
                         "(the full pool is its own row: coreset.full).")
    seeds = section.get("seeds", 5)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"coreset.seeds={seeds} must be a positive count of training seeds, e.g. 5.")
        seeds = list(range(seeds))
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(v, bool) or not isinstance(v, int) for v in seeds) or len(set(seeds)) != len(seeds)):
        raise ValueError(f"coreset.seeds={seeds!r} must be a count (5) or a list of distinct integers ([0, 1, 2]).")
    baselines = section.get("baselines", list(BASELINES))
    baselines = list(baselines) if isinstance(baselines, (list, tuple)) else [baselines]
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"coreset.baselines: {bad} unknown; pass a subset of {list(BASELINES)}.")
    flags = {}
    for name in ("maximisers", "full"):
        v = section.get(name, True)
        if not isinstance(v, bool):
            raise ValueError(f"coreset.{name}={v!r} must be true or false.")
        flags[name] = v
    if not baselines and not flags["maximisers"]:
        raise ValueError("coreset has nothing to compare: name baselines, or set maximisers: true.")
    return {"fractions": [float(f) for f in fractions], "seeds": list(seeds),
            "baselines": list(dict.fromkeys(baselines)), **flags}


@dataclass(frozen=True)
class StudyConfig:
    """What a study selects, trains and reports.

    Attributes
    ----------
    objectives : dict
        Objective name → its parameters (``{}`` for the defaults). Each objective gets greedy maximisers,
        minimisers and mixtures, and scores every subset.
    k : tuple of int
        Subset sizes.
    regimes : tuple of str
        ``fixed`` (k items, ``epochs`` passes), ``balanced`` (k items with class quotas, ``epochs`` passes),
        ``budget`` (k items, a fixed ``steps`` budget whatever k).
    seeds : tuple of int
        Seeds of the optimised, minimised and mixed subsets (training seed; tie-breaks and filler draws).
    random_subsets : int
        Uniform (``fixed``, ``budget``) or class-balanced (``balanced``) random subsets per regime and k.
    mixture_fractions : tuple of float
        Shares of a maximiser's picks swapped out (its greedy prefix of ``1 − f`` is kept).
    fillers : tuple of str
        What replaces the swapped picks: ``random`` rows and/or ``min`` (greedy-minimising completion).
    minimisers : bool
        Include each objective's greedy minimiser.
    minimiser_sample : int or None
        Candidates per minimiser step (``None``: all, exact but ``O(n·min(k, m)³)`` per step).
    model, epochs, steps, batch_size, lr, weight_decay, hidden, threads, device
        Training: the fields of :class:`worth.train.TrainConfig` (:attr:`train`), checked by it.
    holdout_fraction, holdout_seed : float, int
        Stratified split of a pool without a held-out set.
    bootstrap : int
        Bootstrap resamples of every correlation interval (seeded by ``bootstrap_seed``).
    coreset : dict or None
        The coreset table (:func:`check_coreset`): at each fraction of the pool, class-balanced, over several
        training seeds, the accuracy of the baselines, each objective's maximiser and the full pool. ``None``
        (the default): no table, and the study's results and keys are those of a config without the key.
    """

    objectives: dict = field(default_factory=lambda: {"vendi": {}, "logdet": {}, "facility-location": {}})
    k: tuple = (100,)
    regimes: tuple = REGIMES
    seeds: tuple = (0,)
    random_subsets: int = 20
    mixture_fractions: tuple = (0.25, 0.5, 0.75)
    fillers: tuple = FILLERS
    minimisers: bool = True
    minimiser_sample: int | None = 64
    model: str = "mlp"
    epochs: int = 30
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 128
    threads: int = 1
    device: str = "cpu"
    holdout_fraction: float = 0.2
    holdout_seed: int = 0
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    coreset: dict | None = None

    def __post_init__(self) -> None:
        objs = self.objectives
        if isinstance(objs, (list, tuple)):
            objs = {name: {} for name in objs}
        if not isinstance(objs, dict) or not objs:
            raise ValueError("objectives must name at least one objective, e.g. objectives: {vendi: {}, logdet: {}}.")
        known = sorted(worth.objectives())
        clean = {}
        for name, params in objs.items():
            if name not in known:
                raise ValueError(f"objectives: {name!r} is unknown; pass names from {known}.")
            params = dict(params or {})
            worth.get_objective(name, **params)  # the registry checks every parameter
            clean[name] = params
        object.__setattr__(self, "objectives", clean)
        for name in ("k", "regimes", "seeds", "mixture_fractions", "fillers"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value) if isinstance(value, (list, tuple)) else (value,))
        if not self.k or any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in self.k):
            raise ValueError(f"k={list(self.k)} must be integers >= 2, e.g. k: [50, 100].")
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad or not self.regimes:
            raise ValueError(f"regimes: {bad or '[]'} unknown; pass a non-empty subset of {list(REGIMES)}.")
        bad = [f for f in self.fillers if f not in FILLERS]
        if bad:
            raise ValueError(f"fillers: {bad} unknown; pass a subset of {list(FILLERS)}.")
        if any(not 0 < f < 1 for f in self.mixture_fractions):
            raise ValueError(f"mixture_fractions={list(self.mixture_fractions)} must lie in (0, 1), e.g. [0.25, 0.5].")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds={list(self.seeds)} must be a non-empty list of integers, e.g. seeds: [0].")
        for name in ("random_subsets", "bootstrap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "random_subsets" else 1):
                raise ValueError(f"{name}={v!r} must be a positive integer.")
        if self.minimiser_sample is not None and (not isinstance(self.minimiser_sample, int) or self.minimiser_sample < 1):
            raise ValueError(f"minimiser_sample={self.minimiser_sample!r} must be null (all candidates) or a positive integer.")
        _ = self.train  # the training keys are worth.train.TrainConfig's: checked there (model, lr > 0, device ...)
        check_holdout_fraction(self.holdout_fraction)
        object.__setattr__(self, "coreset", check_coreset(self.coreset))

    @property
    def train(self) -> TrainConfig:
        """The study's training keys as the one :class:`worth.train.TrainConfig` (the night's is one too); each
        subset trains with its own seed (``train.fit(..., seed=spec.seed)``)."""
        return TrainConfig.from_mapping({name: getattr(self, name) for name in TRAIN_KEYS})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudyConfig":
        """Build from plain data (a parsed YAML file); an unknown key is an error naming the allowed ones."""
        if not isinstance(data, dict):
            raise ValueError(f"a study config is a mapping of keys to values; got {type(data).__name__}.")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"study config key {unknown[0]!r} is unknown; the allowed keys are: {', '.join(allowed)}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (``from_dict(to_dict())`` round-trips). No ``coreset`` key when there is no
        table, so a config without one keys its study exactly as before the table existed."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if not (f.name == "coreset" and self.coreset is None)}

    @classmethod
    def quick(cls) -> "StudyConfig":
        """A study that finishes in a few minutes on scikit-learn's digits on 2 CPU cores."""
        return cls(objectives={"vendi": {}, "logdet": {}, "facility-location": {}}, k=(40, 80),
                   regimes=REGIMES, seeds=(0,), random_subsets=8, mixture_fractions=(0.5,),
                   fillers=FILLERS, minimiser_sample=48, epochs=30, steps=150, bootstrap=500)


def check_holdout_fraction(fraction) -> float:
    """``fraction`` if it is a number in (0, 0.9], else a ValueError saying so."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.9:
        raise ValueError(f"holdout_fraction={fraction!r} must lie in (0, 0.9], e.g. 0.2.")
    return float(fraction)


def load_config(path: str | Path) -> StudyConfig:
    """Read a ``study.yaml``: a mapping of :class:`StudyConfig` keys (see the repository's ``study.yaml``)."""
    import yaml

    with open(path) as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as err:  # a syntax error names the file and the line, not an internal error
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"{path}:{where}: not valid YAML ({problem}); fix the file (see the repository's "
                             "study.yaml for its shape)") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: a study config is a mapping of keys (see the repository's study.yaml), "
                         f"not a {type(data).__name__}")
    try:
        return StudyConfig.from_dict(data or {})
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
