"""Class quotas (partition matroid) and budgets (knapsack): never exceeded, equal to an enumeration of the rule."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy


def reference_constrained_greedy(X, k, objective, *, labels=None, quotas=None, costs=None, budget=None, **params):
    """The constrained greedy rule written out by enumeration with ``score``: feasible items only, maximise
    gain (per cost with a budget), ties to the lowest index; then the best affordable singleton if better."""
    n = X.shape[0]
    S, value = [], 0.0
    spent = 0.0
    while k is None or len(S) < k:
        best, best_j = -np.inf, None
        for j in range(n):
            if j in S:
                continue
            c = labels[j] if labels is not None else None
            if quotas is not None and c in quotas and sum(labels[i] == c for i in S) >= quotas[c]:
                continue
            if costs is not None and spent + costs[j] > budget + 1e-12 * budget:
                continue
            gain = worth.score(X, S + [j], objective, **params) - value
            crit = gain / costs[j] if costs is not None else gain
            unit = min(costs) if costs is not None else 1.0
            if best_j is None or crit > best + 1e-9 * max(1.0, abs(best), abs(value) / unit):
                best, best_j = crit, j
        if best_j is None:
            break
        S.append(best_j)
        value = worth.score(X, S, objective, **params)
        spent += costs[best_j] if costs is not None else 0.0
    if costs is not None:
        singles = [(worth.score(X, [j], objective, **params), j) for j in range(n) if costs[j] <= budget]
        top = max(s for s, _ in singles)
        if top > value + 1e-12 * max(1.0, value):
            return [min(j for s, j in singles if s == top)]
    return S


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["logdet", "facility-location", "vendi"])
def test_quota_greedy_matches_enumeration(objective, seed):
    X = make_instance("gaussian", n=12, m=4, seed=seed)
    y = np.random.default_rng(seed).integers(0, 3, 12)
    quotas = {0: 1, 1: 2}  # class 2 unlimited
    sel = worth.select(X, 5, objective, labels=y, quotas=quotas)
    ref = reference_constrained_greedy(X, 5, objective, labels=y, quotas=quotas)
    np.testing.assert_array_equal(sel.indices, ref)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["logdet", "facility-location"])
@pytest.mark.parametrize("k", [None, 3])
def test_budget_greedy_matches_enumeration(objective, seed, k):
    X = make_instance("gaussian", n=10, m=4, seed=seed)
    costs = np.random.default_rng(seed).uniform(0.5, 3.0, 10)
    sel = worth.select(X, k, objective, costs=costs, budget=4.0)
    ref = reference_constrained_greedy(X, k, objective, costs=costs, budget=4.0)
    np.testing.assert_array_equal(sel.indices, ref)
    assert sel.info["spent"] <= 4.0


def test_best_singleton_fix():
    """One item worth more alone than the cheap items the ratio rule prefers."""
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    costs = np.array([10.0, 1.0, 1.0])
    sel = worth.select(X * [[30.0], [1.0], [1.0]], None, "logdet", normalize=False, costs=costs, budget=10.0)
    assert sel.info["singleton"] and to_numpy(sel.indices).tolist() == [0]


@pytest.mark.parametrize("optimizer", ["greedy", "lazy", "stochastic"])
@pytest.mark.parametrize("seed", range(3))
def test_quotas_and_budget_never_exceeded(optimizer, seed):
    rng = np.random.default_rng(seed)
    X = make_instance("clustered", n=80, m=6, seed=seed)
    y = rng.choice(["cat", "dog", "eel"], 80)
    costs = rng.uniform(1, 10, 80)
    quotas = {"cat": 3, "dog": 5, "eel": 0}
    sel = worth.select(X, None, "facility-location", optimizer, labels=y, quotas=quotas, costs=costs, budget=40.0,
                       seed=seed)
    idx = to_numpy(sel.indices)
    counts = {c: int(np.sum(y[idx] == c)) for c in quotas}
    assert all(counts[c] <= q for c, q in quotas.items())
    assert costs[idx].sum() <= 40.0 * (1 + 1e-12)
    assert len(set(idx.tolist())) == idx.size
    # the run stopped because nothing else fits
    left = np.setdiff1d(np.flatnonzero(np.isin(y, ["cat", "dog"])), idx)
    fits = costs[left] <= 40.0 - costs[idx].sum()
    full = np.array([counts[c] >= quotas[c] for c in y[left]], dtype=bool)
    assert sel.info["singleton"] or not np.any(fits & ~full)


def test_balanced_quotas():
    X = make_instance("gaussian", n=90, m=5, seed=1)
    y = np.repeat([0, 1, 2], [50, 30, 10])
    sel = worth.select(X, 10, "logdet", "lazy", labels=y, quotas="balanced")
    counts = np.bincount(y[to_numpy(sel.indices)], minlength=3)
    assert counts.sum() == 10 and counts.max() <= 4
    assert sel.info["class_counts"] == {0: int(counts[0]), 1: int(counts[1]), 2: int(counts[2])}


@pytest.mark.parametrize("kwargs,match", [
    ({"labels": [0, 1], "quotas": {0: 1}}, "labels has shape .* one label per row"),
    ({"labels": np.zeros(20, int), "quotas": {7: 1}}, "quota for class 7, which is not in labels"),
    ({"quotas": {0: 1}}, "quotas= needs labels="),
    ({"labels": np.zeros(20, int), "quotas": {0: -1}}, r"quotas\[0\]=-1 must be a non-negative integer"),
    ({"labels": np.zeros(20, int), "quotas": "even"}, "pass 'balanced'"),
    ({"costs": np.r_[-1.0, np.ones(19)], "budget": 5.0}, "costs has negative entries"),
    ({"costs": np.ones(19), "budget": 5.0}, "one cost per row"),
    ({"costs": np.full(20, 3.0), "budget": 2.0}, "below every item's cost"),
    ({"costs": np.ones(20)}, "pass budget= too"),
    ({"budget": 3.0}, "pass costs= too"),
])
def test_bad_constraints_raise_naming_the_argument(kwargs, match):
    X = make_instance("gaussian", n=20, m=3)
    with pytest.raises(ValueError, match=match):
        worth.select(X, 3, "logdet", **kwargs)


def test_k_none_needs_a_budget_and_quotas_bound_k():
    X = make_instance("gaussian", n=20, m=3)
    with pytest.raises(ValueError, match="k=None .* needs a budget="):
        worth.select(X, None, "logdet")
    with pytest.raises(ValueError, match="exceeds what the quotas allow"):
        worth.select(X, 5, "logdet", labels=np.zeros(20, int), quotas={0: 2})
    sel = worth.select(X, None, "logdet", labels=np.repeat([0, 1], 10), quotas={0: 2, 1: 1})
    assert len(sel) == 3
