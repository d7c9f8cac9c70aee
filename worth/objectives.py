"""Matrix spectral objectives and their properties, as data.

Every spectral objective here is ``F(λ, |S|) = combine(Σ_j φ(λ_j), |S|, tr C_S)`` over the eigenvalues
``λ`` of ``C_S = X_Sᵀ X_S``, with ``φ(0) = 0``. Keeping the sum ``Σ φ(λ)`` as the state makes every
marginal gain a sum over the eigenvalues that *move* when a row is added (``Σ_k φ(μ_k) − φ(d_k)``), which
is what the secular-equation path computes, and it lets the Vendi Score (not a plain sum) get its gain from
the same roots: ``H = (tr C · log|S| − Σ λ log λ)/|S|``.

Properties (monotone, submodular, weakly submodular) are declared per objective and checked by property
tests; see DESIGN.md §1.1 for why each holds (``φ'`` operator-monotone decreasing ⇒ submodular).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Properties:
    """What an objective guarantees, as data the optimisers and docs read.

    Attributes
    ----------
    monotone : bool
        ``f(A) <= f(B)`` whenever ``A ⊆ B``.
    submodular : bool
        Diminishing returns hold exactly; lazy greedy is exact and greedy is within ``1 − 1/e`` (if also
        monotone).
    weakly_submodular : bool
        Only a submodularity ratio ``γ ∈ (0, 1]`` is claimed; greedy is within ``1 − e^{−γ}``.
    spectral : bool
        A function of the spectrum of ``C_S`` (served by the secular-equation path).
    summary : str
        One line for ``worth objectives``.
    """

    monotone: bool
    submodular: bool
    weakly_submodular: bool
    spectral: bool
    summary: str


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registry entry: the name, its parameters with defaults and checks, its properties."""

    name: str
    properties: Properties
    defaults: dict[str, Any]
    build: Callable[..., "Objective"]
    checks: dict[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)
    convert: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    """How each parameter is stored once checked (``float`` unless named here)."""


class Objective:
    """An objective bound to its parameters: what every registry entry builds.

    Spectral objectives (:class:`SpectralObjective`) are served by :class:`worth.gains.SpectralState`;
    the others (facility location, the neural scaling law) build their own greedy state with
    ``make_state`` and compute their exact value with ``value``.
    """

    name: str = ""
    properties: Properties

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class SpectralObjective(Objective):
    """A spectral objective bound to its parameters.

    Subclasses define ``phi`` (elementwise, ``φ(0) = 0``) and, when the value is not the plain sum,
    ``combine``. ``dphi`` returns ``φ(d + τ) − φ(d)``; the default subtracts, objectives with a stable
    closed form override it (the difference is what the gains are made of).
    """

    def phi(self, t, xp):
        raise NotImplementedError

    def dphi(self, d, tau, xp):
        return self.phi(d + tau, xp) - self.phi(d, xp)

    def combine(self, s: float, size: int, trace: float, pool: int) -> float:
        """Objective value from the statistic ``s = Σ φ(λ)``, the subset size and ``tr C_S``.

        ``s`` and ``trace`` may be host NumPy arrays (one entry per candidate).
        """
        return float(s)

    def value_from_eigenvalues(self, eigenvalues, size: int, pool: int, xp) -> float:
        """Exact value from the (already snapped, non-negative) eigenvalues of ``C_S``."""
        if size == 0:
            return self.combine(0.0, 0, 0.0, pool)
        s = float(xp.sum(self.phi(eigenvalues, xp)))
        trace = float(xp.sum(eigenvalues))
        return self.combine(s, size, trace, pool)


def _xlogx(t, xp):
    """``t log t`` with ``0 log 0 = 0``, elementwise."""
    safe = xp.where(t > 0, t, xp.ones_like(t))
    return xp.where(t > 0, t * xp.log(safe), xp.zeros_like(t))


def _power(t, a, xp):
    """``t**a`` for ``t >= 0`` with ``0**a = 0`` (a > 0)."""
    safe = xp.where(t > 0, t, xp.ones_like(t))
    return xp.where(t > 0, xp.exp(a * xp.log(safe)), xp.zeros_like(t))


class Vendi(SpectralObjective):
    """Vendi Score ``exp(H_q)`` of ``ρ = C_S/|S|``; ``q = 1`` is the Shannon form, else Rényi."""

    name = "vendi"

    def phi(self, t, xp):
        q = self.params["q"]
        return _xlogx(t, xp) if q == 1 else _power(t, q, xp)

    def combine(self, s, size, trace, pool):
        if size == 0:
            return 0.0
        q = self.params["q"]
        if q == 1:
            return np.exp((trace * math.log(size) - s) / size)
        moment = np.maximum(s / size**q, 0.0)
        return moment ** (1.0 / (1.0 - q))


class VendiPool(SpectralObjective):
    """Pool-normalised Vendi entropy ``H_N(S) = (−Σ λ log λ + |S| log N)/N`` (N = pool size).

    Unnormalised entropy plus a modular term, scaled by the fixed ``1/N``: this is the form in which "the
    Vendi Score is submodular" holds (DESIGN.md §1.1). Its value is an entropy (log scale).
    """

    name = "vendi-pool"

    def phi(self, t, xp):
        return -_xlogx(t, xp)

    def combine(self, s, size, trace, pool):
        if size == 0:
            return 0.0
        return (s + size * math.log(pool)) / pool


class Entropy(SpectralObjective):
    """Unnormalised von Neumann entropy ``−Σ λ log λ``."""

    name = "entropy"

    def phi(self, t, xp):
        return -_xlogx(t, xp)


class LogDet(SpectralObjective):
    """``Σ log(1 + λ/σ²) = log det(I + K_S/σ²)``: the DPP / Gaussian-process information objective."""

    name = "logdet"

    def phi(self, t, xp):
        return xp.log1p(t / self.params["sigma2"])

    def dphi(self, d, tau, xp):
        return xp.log1p(tau / (self.params["sigma2"] + d))


class Power(SpectralObjective):
    """Power trace ``Σ λ^α`` (the spectral scaling law), ``0 < α <= 1``."""

    name = "power"

    def phi(self, t, xp):
        return _power(t, self.params["alpha"], xp)


class Hybrid(SpectralObjective):
    """Scaling-law hybrid ``Σ [1 − (1 + λ/c)^(−α)]``: saturating per direction."""

    name = "hybrid"

    def phi(self, t, xp):
        a, c = self.params["alpha"], self.params["c"]
        return -xp.expm1(-a * xp.log1p(t / c))

    def dphi(self, d, tau, xp):
        a, c = self.params["alpha"], self.params["c"]
        # (1+d/c)^-a − (1+(d+τ)/c)^-a = (1+d/c)^-a · (1 − (1 + τ/(c+d))^-a)
        return xp.exp(-a * xp.log1p(d / c)) * -xp.expm1(-a * xp.log1p(tau / (c + d)))


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _count_or_none(v) -> bool:
    """``None`` or a positive whole number (``50`` or ``50.0``, as the CLI passes it)."""
    return v is None or (_positive(v) and float(v).is_integer())


def _int_or_none(v):
    return None if v is None else int(v)


def _lazy(module: str, cls: str) -> Callable[..., "Objective"]:
    """A builder that imports its class on first use (those modules import this one)."""

    def build(**params: Any) -> "Objective":
        import importlib

        return getattr(importlib.import_module(f"worth.{module}"), cls)(**params)

    return build


_REGISTRY: dict[str, ObjectiveSpec] = {
    spec.name: spec
    for spec in [
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
                       "(the best predictor of held-out accuracy in the reference study). Not spectral."),
            {"similarity": "cosine", "gamma": 1.0, "neighbors": None, "block_size": None, "precision": "float64"},
            _lazy("facility.objective", "FacilityLocation"),
            {"similarity": (lambda v: v in ("cosine", "shifted-cosine", "rbf"),
                            "one of 'cosine', 'shifted-cosine', 'rbf'"),
             "gamma": (_positive, "a positive RBF width, e.g. gamma=1.0"),
             "neighbors": (_count_or_none, "None (dense) or a positive number of neighbours, e.g. neighbors=50"),
             "block_size": (_count_or_none, "None (automatic) or a positive number of rows, e.g. block_size=256"),
             "precision": (lambda v: v in ("float64", "float32"), "'float64' or 'float32'")},
            {"similarity": str, "neighbors": _int_or_none, "block_size": _int_or_none, "precision": str},
        ),
        ObjectiveSpec(
            "scaling-law",
            Properties(True, True, False, False,
                       "Neural scaling law b·(offset^-alpha − (|S|+offset)^-alpha), i.e. a − b·n^-alpha "
                       "relative to the empty set; per_class=True sums it over classes (labels=)."),
            {"b": 1.0, "alpha": 0.5, "offset": 1.0, "per_class": False},
            _lazy("scaling", "ScalingLaw"),
            {"b": (_positive, "a positive scale, e.g. b=1.0"),
             "alpha": (_positive, "a positive exponent, e.g. alpha=0.5"),
             "offset": (_positive, "a positive count offset, e.g. offset=1"),
             "per_class": (lambda v: isinstance(v, (bool, np.bool_)) or v in (0, 1), "True or False")},
            {"per_class": bool},
        ),
    ]
}


def objectives() -> dict[str, Properties]:
    """The registry: objective name → :class:`Properties`."""
    return {name: spec.properties for name, spec in _REGISTRY.items()}


def get_objective(name: str, **params: Any) -> Objective:
    """Build objective ``name`` with ``params`` (defaults filled in), checking every parameter.

    Raises
    ------
    ValueError
        For an unknown objective or parameter, or a parameter out of range; the message names the
        argument and what to pass instead.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"objective={name!r} is unknown; pass one of {sorted(_REGISTRY)} (see `worth objectives`)."
        )
    spec = _REGISTRY[name]
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


def snap_eigenvalues(eigenvalues, m: int, xp):
    """Zero the eigenvalues that are rounding noise of a rank-deficient PSD matrix.

    ``eigh`` returns ``±1e-15``-sized values for the null space; ``φ`` such as ``t log t`` or ``√t`` would
    turn them into spurious mass. Threshold: ``64·m·ε·max(λ)``, the backward-error scale of ``eigh``.
    """
    if eigenvalues.shape[-1] == 0:
        return eigenvalues
    top = xp.max(eigenvalues, axis=-1, keepdims=True)
    tol = 64 * m * float(np.finfo(np.float64).eps) * xp.where(top > 0, top, xp.ones_like(top))
    return xp.where(eigenvalues > tol, eigenvalues, xp.zeros_like(eigenvalues))
