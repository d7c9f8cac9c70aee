"""What an objective is: its declared properties and the base classes every objective derives from.

Every spectral objective is ``F(λ, |S|) = combine(Σ_j φ(λ_j), |S|, tr C_S)`` over the eigenvalues ``λ`` of
``C_S = X_Sᵀ X_S``, with ``φ(0) = 0``. Keeping the sum ``Σ φ(λ)`` as the state makes every marginal gain a sum
over the eigenvalues that *move* when a row is added (``Σ_k φ(μ_k) − φ(d_k)``), which is what the
secular-equation path computes, and it lets the Vendi Score (not a plain sum) get its gain from the same
roots: ``H = (tr C · log|S| − Σ λ log λ)/|S|``.

What an objective can do is declared on its class, so that nothing else decides it by the objective's name or
type: ``φ`` and ``φ'`` (:meth:`SpectralObjective.phi_prime`, the quadrature route's input), the fused
kernel it runs in (:meth:`SpectralObjective.kernel_family`), the gain methods it supports
(:meth:`SpectralObjective.gain_methods`), whether greedy may run lazily on its statistic
(:meth:`SpectralObjective.statistic_key_sign`), and what the regime needs to know
(:attr:`Objective.content_aware`, :attr:`Objective.target_keeps_submodularity`). The concrete objectives live
in their wings (:mod:`worth.spectral.objectives`, :mod:`worth.facility.objective`, :mod:`worth.scaling`);
:mod:`worth.registry` names them. Why each declared property holds: ``docs/gains.md`` (``φ'``
operator-monotone decreasing ⇒ submodular).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

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


class Objective:
    """An objective bound to its parameters: what every registry entry builds.

    Spectral objectives (:class:`SpectralObjective`) are served by
    :class:`worth.spectral.state.SpectralState`; the others (facility location, the neural scaling law) build
    their own greedy state with ``make_state`` and compute their exact value with ``value``.

    Attributes
    ----------
    name : str
        The registry name.
    properties : Properties
        Set by :func:`worth.registry.get_objective` from the registry entry.
    content_aware : bool
        The value depends on the items' embeddings (``False`` for the scaling law, a function of counts):
        only then does selection for a ``target=`` mean anything.
    target_keeps_submodularity : bool
        The mutual information ``I(S; Q) = f(S) + f(Q) − f(S ∪ Q)`` with a target is submodular too (facility
        location: it is facility location on truncated similarities), so lazy greedy stays exact on it.
    unit_diagonal : bool
        Defined on a kernel with unit diagonal (the Vendi Score): rows far from unit norm are refused when the
        caller turns normalisation off, instead of giving a meaningless value.
    float32_rows : bool
        The objective's greedy state keeps float16/float32 rows in float32 (it accumulates what needs float64
        itself), so :func:`worth.select` hands it float32 rows instead of a float64 copy of the pool (half the
        memory: 2.6 GB instead of 5.2 GB at 1.28 M × 512). Facility location does; the spectral state keeps
        its covariance in ``X.dtype`` and so gets float64 rows until it accumulates in float64 itself.
    chosen_rows_only : bool
        The value is a function of the chosen rows alone (and of the pool's size ``N``, which pool-normalised
        forms divide by): rows left out never enter it. Spectral objectives are (the spectrum of ``C_S``);
        facility location is not (it covers every row of the pool), nor are herding and k-center (the pool's
        mean, its farthest row). Where it holds, GreeDi's final round needs only the rows the parts picked, not
        the pool (:func:`worth.distributed.merge_needs_pool`), and :func:`worth.select` accepts those rows
        with ``pool_size=N``.
    marginal_gains : bool
        The state's ``gains`` are ``f(S + j) − f(S)``. ``False`` for the recurrences of :mod:`worth.coreset`
        (herding, k-center greedy), whose gains are a step criterion: mutual information (``target=``) is
        refused for them and ``Selection.gains`` reports the differences of the values instead.
    """

    name: ClassVar[str] = ""
    content_aware: ClassVar[bool] = True
    target_keeps_submodularity: ClassVar[bool] = False
    unit_diagonal: ClassVar[bool] = False
    float32_rows: ClassVar[bool] = False
    chosen_rows_only: ClassVar[bool] = False
    marginal_gains: ClassVar[bool] = True
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
    closed form override it (the difference is what the gains are made of). The rest is optional and only
    makes an objective faster: ``phi_prime`` opens the quadrature routes, ``kernel_family`` the fused compiled
    kernel, ``statistic_key_sign`` lazy evaluations under plain greedy.
    """

    chosen_rows_only: ClassVar[bool] = True  # a function of C_S's spectrum (and of N): see Objective

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

    def gain_scale(self, norms2, pool: int, statistic: bool = False) -> float:
        """Magnitude of a gain on rows of squared norms ``norms2`` (host array): the tie rule's floor.

        The larger of ``|f({x})|`` and ``|f({x}) − f({x/√2})|`` over the rows, through ``combine`` (of the
        statistic ``Σ φ(λ)`` itself with ``statistic=True``, the units of the lazy key): it
        transforms with the gains when the rows are scaled (``c^α`` for ``Σ λ^α``) and is not 0 where a
        singleton is worth exactly 0 (``−t log t`` at ``t = 1``), so rounding noise of size ``ε·scale`` ties.
        """
        t = np.asarray(norms2, dtype=np.float64)
        t = t[t > 0]
        if t.size == 0:
            return 0.0
        def single(u):
            s = self.phi(u, np)
            if statistic or type(self).combine is SpectralObjective.combine:  # the plain sum: f({x}) = φ(‖x‖²)
                return s
            return np.asarray(self.combine(s, 1, u, pool), dtype=np.float64) - empty

        with np.errstate(all="ignore"):
            empty = float(self.combine(0.0, 0, 0.0, pool))
            whole, half = single(t), single(t / 2)
            mag = np.maximum(np.abs(whole), np.abs(whole - half))
        mag = mag[np.isfinite(mag)]
        return float(mag.max()) if mag.size else 0.0

    def phi_prime(self) -> tuple[Callable[[np.ndarray], np.ndarray], bool] | None:
        """``(φ', positive)`` on host arrays where the quadrature rule can serve ``φ``, else ``None``.

        The rule fits ``φ'`` on the interval the eigenvalues move in, so ``φ'`` must be smooth there; the
        zero-cluster root is solved exactly, so ``φ'`` may be unbounded at 0. ``positive`` says ``φ' > 0``:
        the relative fit error then bounds the relative gain error (otherwise the bound is absolute).
        """
        return None

    def kernel_family(self) -> tuple[int, float, float, float] | None:
        """``(kind, sign, a, c)`` of the fused compiled kernel (:func:`worth.spectral.secular.secular_moved_sum`)
        that evaluates ``φ`` over the roots, or ``None``: then the roots come back and ``dphi`` runs in NumPy."""
        return None

    def statistic_key_sign(self) -> int | None:
        """``±1`` when the gain over rows of equal norm is an increasing (``+1``) or decreasing (``−1``)
        function of the change of ``Σ φ(λ)`` *and* that change is submodular, so greedy may evaluate lazily
        on the key ``sign·Δ`` with the same picks (:mod:`worth.spectral.statkey`); ``None`` otherwise."""
        return None

    def gain_methods(self) -> tuple[str, ...]:
        """The gain methods (:data:`worth.spectral.methods.METHODS`) that serve this objective exactly.

        Every spectral objective has the eigenvalue oracle and the secular roots; the quadrature routes need
        ``φ'`` (:meth:`phi_prime`); ``closed-form`` and ``closed-form-table`` need a :meth:`resolvent` (``logdet``; ``hybrid`` at ``α = 1``).
        """
        routes = ("oracle", "secular", "secular-portable")
        return routes + ("quadrature", "sherman-morrison") if self.phi_prime() is not None else routes

    def resolvent(self) -> tuple[float, bool] | None:
        """``(c, squared)`` where a row's change of ``Σ φ(λ)`` is a function of ``a = xᵀ(cI + C)⁻¹x`` (and, when
        ``squared``, of ``b = xᵀ(cI + C)⁻²x``) given by :meth:`resolvent_gain`; ``None`` where it is not (the
        default). Objectives that have one declare ``closed-form`` (``a``, ``b`` by projection on the
        eigenbasis) and ``closed-form-table`` (``a``, ``b`` of every row kept and updated by Sherman–Morrison:
        greedy's route, ``docs/gains.md``)."""
        return None

    def resolvent_gain(self, a, b, xp):
        """The change of ``Σ φ(λ)`` from :meth:`resolvent`'s ``a`` and ``b`` (arrays of the namespace ``xp``)."""
        raise NotImplementedError(f"objective {self.name!r} declares no resolvent")


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
