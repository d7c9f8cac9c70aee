"""The registry of objectives: name → what it is, its parameters and their checks, and its properties.

An entry (:class:`ObjectiveSpec`) holds what the *name* means: the class to build, the parameters with their
defaults, how each is checked and stored, and the declared :class:`~worth.objectives.Properties`. What the
objective can *do* (``φ``, ``φ'``, its gain methods, its statistic key, what the regime needs) is declared
on its class. So adding an objective is one class and one :func:`register` call; nothing else names it.

This module imports the wings plainly (the objectives' base classes live in :mod:`worth.objectives`, which
the wings import and which imports none of them), so there is no import circle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .coreset import Herding, KCenter
from .facility.knn import ANN_BACKENDS
from .facility.objective import FacilityLocation
from .objectives import Objective, Properties
from .scaling import ScalingLaw
from .spectral.objectives import Entropy, Hybrid, LogDet, Power, Vendi, VendiPool


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registry entry: the name, its properties, its parameters with defaults and checks, its class.

    Attributes
    ----------
    name : str
        What users pass as ``objective=``.
    properties : Properties
    defaults : dict
        Every parameter with its default value (a parameter not named here is refused).
    build : callable
        ``build(**params)`` returns the :class:`~worth.objectives.Objective` (usually its class).
    checks : dict
        Parameter → ``(ok, hint)``: ``ok(value)`` says whether it is in range, ``hint`` what to pass instead.
    convert : dict
        How each parameter is stored once checked (``float`` unless named here).
    """

    name: str
    properties: Properties
    defaults: dict[str, Any]
    build: Callable[..., Objective]
    checks: dict[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)
    convert: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _count_or_none(v) -> bool:
    """``None`` or a positive whole number (``50`` or ``50.0``, as the CLI passes it)."""
    return v is None or (_positive(v) and float(v).is_integer())


def _int_or_none(v):
    return None if v is None else int(v)


_ENTRIES: dict[str, ObjectiveSpec] = {}


def register(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add ``spec`` to the registry, so that ``select(..., objective=spec.name)`` builds it.

    Raises
    ------
    ValueError
        If ``spec`` is not an :class:`ObjectiveSpec`, or its name is taken (call :func:`unregister` first to
        replace an entry).
    """
    if not isinstance(spec, ObjectiveSpec):
        raise ValueError(f"spec={spec!r} must be a worth.registry.ObjectiveSpec (name, properties, defaults, build).")
    if spec.name in _ENTRIES:
        raise ValueError(
            f"objective {spec.name!r} is already registered; pick another name, or unregister({spec.name!r}) first."
        )
    _ENTRIES[spec.name] = spec
    return spec


def unregister(name: str) -> ObjectiveSpec:
    """Remove the entry ``name`` and return it (tests that register a toy objective clean up with it)."""
    spec = lookup(name)
    del _ENTRIES[name]
    return spec


def lookup(name: str) -> ObjectiveSpec:
    """The entry of objective ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the registered ones.
    """
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ValueError(
            f"objective={name!r} is unknown; pass one of {sorted(_ENTRIES)} (see `worth objectives`)."
        )
    return _ENTRIES[name]


def entries() -> dict[str, ObjectiveSpec]:
    """Every entry, name → :class:`ObjectiveSpec`, in registration order (a copy)."""
    return dict(_ENTRIES)


def objectives() -> dict[str, Properties]:
    """The registry: objective name → :class:`Properties`."""
    return {name: spec.properties for name, spec in _ENTRIES.items()}


def get_objective(name: str, **params: Any) -> Objective:
    """Build objective ``name`` with ``params`` (defaults filled in), checking every parameter.

    Raises
    ------
    ValueError
        For an unknown objective or parameter, or a parameter out of range; the message names the
        argument and what to pass instead.
    """
    spec = lookup(name)
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        allowed = sorted(spec.defaults) or "none"
        raise ValueError(
            f"parameter {unknown[0]!r} is not a parameter of objective {name!r}; its parameters are: {allowed}."
        )
    full = {**spec.defaults, **params}
    for key, (ok, hint) in spec.checks.items():
        if not ok(full[key]):
            raise ValueError(f"{key}={full[key]!r} is out of range for objective {name!r}; pass {hint}.")
    obj = spec.build(**{k: spec.convert.get(k, float)(v) for k, v in full.items()})
    obj.properties = spec.properties
    return obj


for _spec in [
    ObjectiveSpec(
        "vendi",
        Properties(False, False, False, True,
                   "Vendi Score exp(H_q) of C_S/|S| (q=1 Shannon). Not submodular: lazy greedy refused."),
        {"q": 1.0},
        Vendi,
        {"q": (_positive, "a positive finite order, e.g. q=1 (Shannon) or q=2")},
    ),
    ObjectiveSpec(
        "vendi-pool",
        Properties(False, True, False, True,
                   "Pool-normalised Vendi entropy (−Σλlogλ + |S|log N)/N: the submodular form of the Vendi Score."),
        {},
        VendiPool,
    ),
    ObjectiveSpec(
        "entropy",
        Properties(False, True, False, True, "Unnormalised von Neumann entropy −Σ λ log λ."),
        {},
        Entropy,
    ),
    ObjectiveSpec(
        "logdet",
        Properties(True, True, False, True, "log det(I + K_S/sigma2): DPP / log-determinant."),
        {"sigma2": 1.0},
        LogDet,
        {"sigma2": (_positive, "a positive noise variance, e.g. sigma2=1.0")},
    ),
    ObjectiveSpec(
        "power",
        Properties(True, True, False, True, "Power trace Σ λ^alpha, 0 < alpha <= 1 (spectral scaling law)."),
        {"alpha": 0.5},
        Power,
        {"alpha": (lambda a: _positive(a) and a <= 1, "an exponent in (0, 1], e.g. alpha=0.5")},
    ),
    ObjectiveSpec(
        "hybrid",
        Properties(True, False, True, True,
                   "Scaling-law hybrid Σ[1−(1+λ/c)^−alpha]: weakly submodular (φ' not operator-monotone)."),
        {"alpha": 1.0, "c": 1.0},
        Hybrid,
        {"alpha": (_positive, "a positive exponent, e.g. alpha=1.0"),
         "c": (_positive, "a positive scale, e.g. c=1.0")},
    ),
    ObjectiveSpec(
        "facility-location",
        Properties(True, True, False, False,
                   "Σ_i max_{j∈S} s(i,j), s = max(0, cos) | (1+cos)/2 | rbf: coverage of the pool "
                   "(the best predictor of held-out accuracy in the reference study; the nightly default, "
                   "`worth curate --objective auto`, unless a study of the pool ranks another first). Not spectral."),
        {"similarity": "cosine", "gamma": 1.0, "neighbors": None, "block_size": None, "precision": "float64",
         "ann": None},
        FacilityLocation,
        {"similarity": (lambda v: v in ("cosine", "shifted-cosine", "rbf"),
                        "one of 'cosine', 'shifted-cosine', 'rbf'"),
         "gamma": (_positive, "a positive RBF width, e.g. gamma=1.0"),
         "neighbors": (_count_or_none, "None (dense) or a positive number of neighbours, e.g. neighbors=50"),
         "block_size": (_count_or_none, "None (automatic) or a positive number of rows, e.g. block_size=256"),
         "precision": (lambda v: v in ("float64", "float32"), "'float64' or 'float32'"),
         "ann": (lambda v: v is None or v in ANN_BACKENDS, f"None (exact kNN) or one of {ANN_BACKENDS}")},
        {"similarity": str, "neighbors": _int_or_none, "block_size": _int_or_none, "precision": str,
         "ann": lambda v: v},
    ),
    ObjectiveSpec(
        "scaling-law",
        Properties(True, True, False, False,
                   "Neural scaling law b·(offset^-alpha − (|S|+offset)^-alpha), i.e. a − b·n^-alpha "
                   "relative to the empty set; per_class=True sums it over classes (labels=). A function of counts "
                   "alone: a baseline, not a chooser of items (objective auto passes over it)."),
        {"b": 1.0, "alpha": 0.5, "offset": 1.0, "per_class": False},
        ScalingLaw,
        {"b": (_positive, "a positive scale, e.g. b=1.0"),
         "alpha": (_positive, "a positive exponent, e.g. alpha=0.5"),
         "offset": (_positive, "a positive count offset, e.g. offset=1"),
         "per_class": (lambda v: isinstance(v, (bool, np.bool_)) or v in (0, 1), "True or False")},
        {"per_class": bool},
    ),
    ObjectiveSpec(
        "herding",
        Properties(False, False, False, False,
                   "Herding on the mean embedding: argmax <w_t, x>, w_{t+1} = w_t + mu - x_t (DeepCore baseline); "
                   "value |mu| - |mu - mean(X_S)|. A recurrence, not submodular: lazy refused."),
        {},
        Herding,
    ),
    ObjectiveSpec(
        "k-center",
        Properties(False, False, False, False,
                   "K-center greedy (farthest-first; DeepCore baseline): radius within 2x of the optimal "
                   "k-center; value -radius. A recurrence, not submodular: lazy refused."),
        {},
        KCenter,
    ),
]:
    register(_spec)
