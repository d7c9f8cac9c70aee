"""The spectral objectives: each is ``φ`` (and ``combine`` when the value is not the plain sum ``Σ φ(λ)``),
plus what it declares about itself — ``φ'`` for the quadrature routes, its fused kernel family, its gain
methods, its statistic key. The math of the routes that use them: ``docs/gains.md``.
"""

from __future__ import annotations

import math

import numpy as np

from ..objectives import SpectralObjective
from .secular import HYBRID, LOG1P, POWER, XLOGX


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
    unit_diagonal = True

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

    def phi_prime(self):
        q = self.params["q"]
        if q == 1.0:
            return (lambda t: np.log(t) + 1.0), False
        if q < 1.0:
            return (lambda t: q * t ** (q - 1.0)), True
        return None  # t^q with q > 1: φ' grows, not a Stieltjes function

    def kernel_family(self):
        q = self.params["q"]
        return (XLOGX, 1.0, 0.0, 0.0) if q == 1.0 else (POWER, 1.0, q, 0.0)

    def statistic_key_sign(self):
        # q = 1: V decreases in Δ(Σ λ log λ), and −Δ is the (submodular) entropy gain; q < 1: V increases in
        # Δ(Σ λ^q), the (submodular) power-trace gain; q > 1: Σ λ^q is not submodular.
        q = self.params["q"]
        if q > 1:
            return None
        return -1 if q == 1 else 1


class Entropy(SpectralObjective):
    """Unnormalised von Neumann entropy ``−Σ λ log λ``."""

    name = "entropy"

    def phi(self, t, xp):
        return -_xlogx(t, xp)

    def phi_prime(self):
        return (lambda t: -np.log(t) - 1.0), False

    def kernel_family(self):
        return (XLOGX, -1.0, 0.0, 0.0)


class VendiPool(Entropy):
    """Pool-normalised Vendi entropy ``H_N(S) = (−Σ λ log λ + |S| log N)/N`` (N = pool size).

    Unnormalised entropy plus a modular term, scaled by the fixed ``1/N``: this is the form in which "the
    Vendi Score is submodular" holds (``docs/gains.md``). Its value is an entropy (log scale);
    ``φ`` and what follows from it are the entropy's.
    """

    name = "vendi-pool"

    def combine(self, s, size, trace, pool):
        if size == 0:
            return 0.0
        return (s + size * math.log(pool)) / pool


class LogDet(SpectralObjective):
    """``Σ log(1 + λ/σ²) = log det(I + K_S/σ²)``: the DPP / Gaussian-process information objective."""

    name = "logdet"

    def phi(self, t, xp):
        return xp.log1p(t / self.params["sigma2"])

    def dphi(self, d, tau, xp):
        return xp.log1p(tau / (self.params["sigma2"] + d))

    def kernel_family(self):
        return (LOG1P, 1.0, self.params["sigma2"], 0.0)

    def gain_methods(self):
        # φ' = 1/(σ² + t) is a single quadrature node, but the determinant lemma below is exact and cheaper.
        return ("oracle", "secular", "secular-portable", "closed-form", "closed-form-table")

    def resolvent(self):
        """The matrix determinant lemma: ``Δ = log(1 + xᵀ(σ²I + C)⁻¹x)`` (see :meth:`SpectralObjective.resolvent`)."""
        return self.params["sigma2"], False

    def resolvent_gain(self, a, b, xp):
        return xp.log1p(a)


class Power(SpectralObjective):
    """Power trace ``Σ λ^α`` (the spectral scaling law), ``0 < α <= 1``."""

    name = "power"

    def phi(self, t, xp):
        return _power(t, self.params["alpha"], xp)

    def phi_prime(self):
        a = self.params["alpha"]
        return (lambda t: a * t ** (a - 1.0)), True

    def kernel_family(self):
        return (POWER, 1.0, self.params["alpha"], 0.0)


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

    def phi_prime(self):
        a, c = self.params["alpha"], self.params["c"]
        if a > 1.0:
            return None
        return (lambda t: (a / c) * (1.0 + t / c) ** (-a - 1.0)), True

    def gain_methods(self):
        routes = super().gain_methods()
        return routes + ("closed-form", "closed-form-table") if self.resolvent() is not None else routes

    def resolvent(self):
        """At ``α = 1``, ``Σ φ(λ) = Σ λ/(c + λ) = m − c·tr(cI + C)⁻¹``, so a row's gain is Sherman–Morrison's
        ``Δ = c·xᵀ(cI + C)⁻²x / (1 + xᵀ(cI + C)⁻¹x)``: exact, and no quadrature rule (whose ``φ'`` spans many
        decades here: a coarse rule with a wide table) is needed."""
        return (self.params["c"], True) if self.params["alpha"] == 1.0 else None

    def resolvent_gain(self, a, b, xp):
        return self.params["c"] * b / (1.0 + a)

    def kernel_family(self):
        return (HYBRID, 1.0, self.params["alpha"], self.params["c"])
