"""Lazy greedy with bounded gains (:meth:`worth.optimizers.GainModel.gain_bounds`): the same picks as without.

A model that bounds its gains lets lazy greedy evaluate exactly only the candidates whose upper bound reaches
the best lower bound; the others keep their upper bound as a stale bound. The spectral quadrature's fallback
steps (a rule that cannot reach ``rtol`` still screens) are the user: power past full rank on pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth.constraints import Feasibility
from worth.optimizers import GainModel, lazy


class Coverage(GainModel):
    """Weighted coverage (monotone submodular): gain = weight of the elements a set newly covers."""

    def __init__(self, sets: np.ndarray, weights: np.ndarray, slack: float | None, seed: int = 0) -> None:
        self.sets, self.w = sets, weights
        self.n = sets.shape[0]
        self.covered = np.zeros(sets.shape[1], dtype=bool)
        self.slack = slack
        self.rng = np.random.default_rng(seed)
        self.exact = 0

    @property
    def value(self) -> float:
        return float(self.w[self.covered].sum())

    def gains(self, candidates):
        self.exact += len(candidates)
        return (self.sets[candidates] & ~self.covered) @ self.w

    def gain_bounds(self, candidates):
        if self.slack is None:
            return None
        g = (self.sets[candidates] & ~self.covered) @ self.w
        return g - self.slack * self.rng.random(g.size), g + self.slack * self.rng.random(g.size)

    def add(self, index: int) -> None:
        self.covered |= self.sets[index]


def _instance(seed=0, n=300, u=120):
    rng = np.random.default_rng(seed)
    sets = rng.random((n, u)) < 0.05
    weights = rng.integers(1, 4, size=u).astype(float)  # integer weights: many exact ties
    return sets, weights


@pytest.mark.parametrize("slack", [1e-3, 0.5, 3.0, 50.0])
@pytest.mark.parametrize("regime", ["none", "balanced", "knapsack"])
def test_bounded_lazy_makes_the_picks_of_exact_lazy(slack, regime):
    sets, weights = _instance()
    n, k = sets.shape[0], 40
    labels = np.arange(n) % 4
    costs = 1.0 + (np.arange(n) % 7) / 3.0

    def constraint():
        if regime == "balanced":
            return Feasibility(n, k, labels=labels, quotas="balanced")
        if regime == "knapsack":
            return Feasibility(n, None, costs=costs, budget=30.0)
        return None

    exact, bounded = Coverage(sets, weights, None), Coverage(sets, weights, slack, seed=1)
    ref = lazy(exact, k, constraint=constraint())
    got = lazy(bounded, k, constraint=constraint())
    assert got.indices == ref.indices
    np.testing.assert_array_equal(got.gains, ref.gains)
    if slack <= 0.5:  # tight bounds rule candidates out: fewer exact gains
        assert bounded.exact < exact.exact


def test_no_bounds_this_step_is_plain_lazy():
    sets, weights = _instance(seed=2)
    a, b = Coverage(sets, weights, None), Coverage(sets, weights, None)
    b.gain_bounds = lambda candidates: None
    assert lazy(a, 30).indices == lazy(b, 30).indices and a.exact == b.exact


@pytest.mark.parametrize("regime", [{}, {"quotas": "balanced"}, {"costs": True}])
@pytest.mark.parametrize("name,params", [("power", {"alpha": 0.5}), ("vendi", {"q": 0.5}), ("entropy", {})])
def test_spectral_lazy_on_fallback_steps_screens_and_keeps_the_roots_picks(name, params, regime):
    """A rule held to an unreachable rtol: every step falls back to the roots, and the screen (the rule's own
    bound) decides which candidates need them; the picks and values are the exact roots'."""
    X = make_instance("gaussian", n=120, m=8, seed=7)
    labels = np.arange(120) % 3
    kw = dict(labels=labels, quotas="balanced") if regime.get("quotas") else {}
    if regime.get("costs"):
        kw = dict(costs=1.0 + (np.arange(120) % 5) / 4.0, budget=20.0)
    k = None if "costs" in kw else 24
    # The Vendi Score is not submodular: greedy runs lazily on its statistic's key (not under a knapsack)
    optimizer = "greedy" if name == "vendi" else "lazy"
    screened = worth.select(X, k, name, optimizer=optimizer, method="quadrature", rtol=1e-15, **kw, **params)
    roots = worth.select(X, k, name, optimizer=optimizer, method="secular", **kw, **params)
    assert screened.diagnostics["fallback_steps"] > 0
    np.testing.assert_array_equal(screened.indices, roots.indices)
    np.testing.assert_allclose(screened.values, roots.values, rtol=1e-12)
    if not (name == "vendi" and "costs" in kw):  # (there every candidate is evaluated at every step)
        assert screened.timings["evaluations"] < roots.timings["evaluations"]  # the screen ruled some out
