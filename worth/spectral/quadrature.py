"""Shifted log-det quadrature: spectral gains as a weighted sum of log-det gains.

If ``φ'(t) ≈ c₀ + Σ_q ω_q/(t + s_q)`` on the interval the eigenvalues move in, then with
``φ̃(t) = c₀ t + Σ_q ω_q log(1 + t/s_q)``

    Σ_j φ̃(μ_j) − φ̃(λ_j) = c₀‖x‖² + Σ_q ω_q log(1 + xᵀ(C + s_q I)⁻¹x),

because ``log det(C + x xᵀ + sI) − log det(C + sI) = log(1 + xᵀ(C + sI)⁻¹x)`` (the determinant lemma). For a
batch in the eigenbasis, ``xᵀ(C + sI)⁻¹x = Σ_j z_j²/(λ_j + s) + w₀/s``: one product ``(Z∘Z)·R`` with
``R[j, q] = 1/(λ_j + s_q)`` — ``2rQ`` flops per candidate after the projection, no roots at all.

The eigenvalues other than the zero cluster's move inside ``[λ_min⁺, λ_max + ‖x‖²]`` (interlacing), so the
fit only has to hold there; the one root that leaves the zero cluster moves from 0, where ``φ'`` may be
unbounded (``t^α``, ``t log t``), so it is solved exactly and its contribution replaced:
``+ φ(μ₀) − φ̃(μ₀)``.

Where ``φ'`` is finite at 0 (the hybrid's), the rule is fitted on ``[0, hi]`` instead (:func:`covers_zero`,
``Rule.zero``): the root leaving the zero cluster then moves inside the fit too, no root is solved, and the
whole gain is the determinant-lemma sum for a rank-deficient ``C`` as well — so the Sherman–Morrison table
(:class:`worth.spectral.methods.ShermanMorrison`) serves from the first pick, not only once ``C`` has full
rank (on 784-dimensional pixels that is the whole path: issue 22's hybrid maximiser paid an ``n·m·t``
projection per pick).

Error bound: ``|Δ − Δ̃| ≤ sup_{t∈fit} |φ' − φ̃'| · ‖x‖²`` (every eigenvalue moves up, by ``‖x‖²`` in all);
for ``φ' > 0`` the relative fit error bounds the relative gain error directly. The sup is estimated on a
grid four times denser than the fitting grid (an estimate, checked against the exact gains in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..objectives import SpectralObjective

Q_LADDER = (12, 16, 24, 32, 40, 48, 64, 80, 96)


@dataclass(frozen=True)
class Rule:
    """A fitted rule on ``[lo, hi]``: nodes ``s``, weights ``w``, constant ``c0`` and its error estimate."""

    s: np.ndarray
    w: np.ndarray
    c0: float
    lo: float
    hi: float
    error: float  # sup of the fit error on a dense grid: relative, or absolute divided by ``scale``
    relative: bool
    scale: float  # 1 for relative rules; max|φ'| on the interval (at least 1) for absolute ones
    zero: bool = False  # the fit holds on ``[0, hi]`` (``lo`` is 0): no root needs solving exactly

    def phi_tilde(self, t):
        """``φ̃(t) = c₀ t + Σ ω_q log(1 + t/s_q)`` (NumPy, broadcast over ``t``)."""
        t = np.asarray(t, dtype=np.float64)
        return self.c0 * t + np.log1p(t[..., None] / self.s) @ self.w


def _fit_once(fprime, lo, hi, n_nodes, relative, zero=False):
    """Best of two column scalings (``1/(t+s)`` and ``s/(t+s)``): each is the better-conditioned one on
    some ranges, and a fit costs microseconds."""
    a = _fit_scaled(fprime, lo, hi, n_nodes, relative, column_scale=False, zero=zero)
    b = _fit_scaled(fprime, lo, hi, n_nodes, relative, column_scale=True, zero=zero)
    return a if a.error <= b.error else b


def _fit_scaled(fprime, lo, hi, n_nodes, relative, column_scale, zero=False):
    # Nodes a decade beyond each end: the measure's mass outside [lo, hi] looks like 1/t or a constant there.
    # ``zero``: the fit must hold down to t = 0 as well (lo is then only where the grid turns geometric): t = 0
    # joins the fitting grid, and the check grid reaches three decades below lo, and 0.
    s = np.geomspace(lo / 10.0, hi * 10.0, n_nodes)
    t = np.geomspace(lo, hi, 6 * n_nodes)
    dense = np.geomspace(lo, hi, 24 * n_nodes)
    if zero:
        t = np.concatenate([[0.0], np.geomspace(lo * 1e-3, lo, n_nodes, endpoint=False), t])
        dense = np.concatenate([[0.0], np.geomspace(lo * 1e-3, lo, 4 * n_nodes, endpoint=False), dense])
    with np.errstate(all="ignore"):
        target = fprime(t)
    if not _representable(target, relative):
        return Rule(s, np.zeros_like(s), 0.0, 0.0 if zero else lo, hi, float("inf"), relative, 1.0, zero)
    scale = np.abs(target) if relative else np.full_like(t, max(1.0, float(np.max(np.abs(target)))))
    col = s if column_scale else np.ones_like(s)
    basis = np.concatenate([np.ones((t.size, 1)), col[None, :] / (t[:, None] + s[None, :])], axis=1)
    coef, *_ = np.linalg.lstsq(basis / scale[:, None], target / scale, rcond=None)
    coef[1:] *= col
    approx = coef[0] + (1.0 / (dense[:, None] + s[None, :])) @ coef[1:]
    exact = fprime(dense)
    err = np.abs(approx - exact)
    err = err / np.abs(exact) if relative else err
    return Rule(s, coef[1:], float(coef[0]), 0.0 if zero else lo, hi, float(np.max(err)), relative,
                1.0 if relative else float(scale[0]), zero)


def covers_zero(objective: SpectralObjective) -> bool:
    """Whether a rule may be fitted down to ``t = 0``: ``φ'`` positive and finite at 0 (the hybrid's
    ``α/c``; not ``t^α`` or ``t log t``, whose ``φ'`` is unbounded there)."""
    spec = objective.phi_prime()
    if spec is None or not spec[1]:
        return False
    with np.errstate(all="ignore"):
        at0 = np.asarray(spec[0](np.zeros(1)), dtype=np.float64)
    return bool(np.all(np.isfinite(at0)) and np.all(at0 > 0))


def _representable(target: np.ndarray, relative: bool) -> bool:
    """Whether float64 holds ``φ'`` on the fitting grid well enough to fit it.

    Far from the scale of the objective's parameters it may not: the hybrid's ``φ' = (α/c)(1 + t/c)^(−α−1)``
    underflows to 0 for ``t/c`` near ``1e300`` (rows of norm ``1e150``), and a relative fit then divides by
    zero (LAPACK's SVD refused it: issue 21). Such a rule gets an infinite error, so the step uses the
    exact roots instead.
    """
    if not np.all(np.isfinite(target)):
        return False
    return bool(np.all(target > 0)) if relative else True


def fit_rule(objective: SpectralObjective, lo: float, hi: float, rtol: float, *, zero: bool = False) -> Rule | None:
    """The smallest rule from :data:`Q_LADDER` whose fit error on ``[lo, hi]`` (``zero``: on ``[0, hi]``, the
    grid geometric from ``lo``; see :func:`covers_zero`) is below ``rtol/4``.

    Returns the most accurate rule tried when none reaches it (the caller compares ``rule.error`` with its
    tolerance), or ``None`` if the objective has no such representation.
    """
    spec = objective.phi_prime()
    if spec is None:
        return None
    fprime, positive = spec
    best = None
    for n_nodes in Q_LADDER:
        rule = _fit_once(fprime, lo, hi, n_nodes, relative=positive, zero=zero)
        if best is None or rule.error < best.error:
            best = rule
        if rule.error <= target_error(rule, rtol):
            return rule
    return best


def target_error(rule: Rule, rtol: float) -> float:
    """Fit error a rule must reach to serve gains to ``rtol``.

    Relative rules (``φ' > 0``) bound the relative gain error directly (a factor 4 of margin). Absolute
    rules (``t log t``: ``φ'`` changes sign) bound the gain error by ``error·max|φ'|·‖x‖²``, while late
    greedy gains are one or two orders below ``max|φ'|``: a factor 400 of margin.
    """
    return rtol / 4 if rule.relative else rtol / 400
