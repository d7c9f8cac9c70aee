"""GreeDi (``worth.distributed_greedy``): P = 1 is the greedy; P > 1 stays close, respects the regime."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth._array import to_numpy


@pytest.mark.parametrize("objective,optimizer", [("facility-location", "lazy"), ("logdet", "greedy"),
                                                 ("vendi", "greedy")])
def test_one_part_equals_greedy(objective, optimizer):
    X = make_instance("clustered", n=80, m=6, seed=2)
    ref = worth.select(X, 15, objective, optimizer)
    got = worth.distributed_greedy(X, 15, parts=1, objective=objective, optimizer=optimizer)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-10)


@pytest.mark.parametrize("parts", [2, 5])
def test_several_parts_close_to_greedy(parts):
    X = make_instance("gaussian", n=300, m=8, seed=3)
    ref = worth.select(X, 20, "facility-location", "lazy")
    got = worth.distributed_greedy(X, 20, parts=parts, objective="facility-location", optimizer="lazy", seed=1)
    idx = to_numpy(got.indices)
    assert idx.size == 20 == np.unique(idx).size
    assert got.value == pytest.approx(worth.score(X, idx, "facility-location"), rel=1e-12)
    assert got.value >= 0.95 * ref.value  # far above the (1 − 1/e)/2 guarantee in practice
    assert got.info["parts"] == parts and got.info["round"] in ("union", "part")


def test_regime_options_pass_through():
    X = make_instance("gaussian", n=120, m=5, seed=4)
    y = np.repeat([0, 1, 2], 40)
    got = worth.distributed_greedy(X, 9, parts=3, objective="logdet", labels=y, quotas="balanced")
    assert np.bincount(y[to_numpy(got.indices)], minlength=3).max() <= 3
    costs = np.random.default_rng(0).uniform(1, 4, 120)
    got = worth.distributed_greedy(X, None, parts=3, objective="logdet", costs=costs, budget=10.0)
    assert costs[to_numpy(got.indices)].sum() <= 10.0


@pytest.mark.parametrize("kwargs,match", [({"parts": 0}, "parts=0 must be a positive integer"),
                                          ({"parts": 500}, "parts=500 exceeds the number of rows"),
                                          ({"parts": 2, "init": [1]}, "init= is not supported")])
def test_bad_parts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        worth.distributed_greedy(make_instance("gaussian", 50, 4), 5, objective="logdet", **kwargs)


def _merge_on_the_pool(X, k, solutions, objective, optimizer, **params):
    """The reference final round: the pool as ground set, the parts' picks as candidates (the rule of
    ``merge_parts`` written out, as it ran before it could run on the picks alone)."""
    union = np.unique(np.concatenate(solutions))
    ref = worth.select(X, min(k, union.size), objective, optimizer, candidates=union, seed=0, **params)
    values = [worth.score(X, p, objective, **params) for p in solutions]
    best = int(np.argmax(values))
    if values[best] > ref.value + 1e-12 * abs(ref.value):
        ref = worth.select(X, min(k, solutions[best].size), objective, optimizer, candidates=np.sort(solutions[best]),
                           seed=0, **params)
    return ref, values


@pytest.mark.parametrize("objective,optimizer,params", [
    ("vendi", "greedy", {}), ("vendi", "stochastic", {}), ("vendi", "greedy", {"q": 2.0}),
    ("vendi-pool", "lazy", {}), ("logdet", "lazy", {"sigma2": 0.5}), ("power", "greedy", {}),
    ("hybrid", "greedy", {}),
])
@pytest.mark.parametrize("k", [6, 14])
def test_a_spectral_merge_on_the_parts_picks_equals_the_merge_on_the_pool(objective, optimizer, params, k):
    # The round runs on the union's rows with the pool's size: same picks, gains and values as on the pool.
    X = make_instance("clustered", n=200, m=6, seed=5)
    parts = worth.distributed.partition(200, 4, seed=3)
    solutions = [rows[np.random.default_rng(i).choice(rows.size, 9, replace=False)] for i, rows in enumerate(parts)]
    ref, values = _merge_on_the_pool(X, k, solutions, objective, optimizer, **params)
    got = worth.distributed.merge_parts(X, k, solutions, objective=objective, optimizer=optimizer, **params)
    assert got.info["ground"] == "picks"
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12)
    np.testing.assert_allclose(got.gains, ref.gains, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got.info["part_values"], values, rtol=1e-12)
    # what a worker that read only the picked rows passes: those rows, solutions into them, the pool's size
    union = np.unique(np.concatenate(solutions))
    rows = worth.distributed.merge_parts(X[union], k, [np.searchsorted(union, p) for p in solutions],
                                         objective=objective, optimizer=optimizer, pool_size=200, **params)
    np.testing.assert_array_equal(union[rows.indices], ref.indices)
    np.testing.assert_allclose(rows.values, ref.values, rtol=1e-12)


def test_a_part_that_beats_the_union_wins_on_the_picks_too():
    # The hybrid's greedy over the union is worth less than the second part's own picks (found by a search
    # over seeds): the part round runs on the picks' rows as it does on the pool.
    rng = np.random.default_rng(19)
    X = rng.normal(size=(30, 3)) * [3, 1, 0.3]
    solutions = [np.sort(rng.choice(np.arange(0, 15), 4, replace=False)),
                 np.sort(rng.choice(np.arange(15, 30), 4, replace=False))]
    ref, values = _merge_on_the_pool(X, 4, solutions, "hybrid", "greedy")
    got = worth.distributed.merge_parts(X, 4, solutions, objective="hybrid")
    assert got.info["round"] == "part" and got.info["ground"] == "picks"
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12)
    assert got.info["part_values"] == pytest.approx(values, rel=1e-12)


@pytest.mark.parametrize("objective,kwargs,needs", [
    ("vendi", {}, False), ("logdet", {}, False), ("facility-location", {}, True), ("herding", {}, True),
    ("k-center", {}, True), ("vendi", {"quotas": "balanced"}, True), ("vendi", {"budget": 3.0}, True),
])
def test_which_final_rounds_need_the_pool(objective, kwargs, needs):
    assert worth.distributed.merge_needs_pool(objective, {}, **kwargs) is needs


def test_facility_locations_merge_keeps_the_pool_and_refuses_pool_size():
    X = make_instance("gaussian", n=120, m=5, seed=6)
    solutions = [np.arange(0, 60, 7), np.arange(60, 120, 9)]
    got = worth.distributed.merge_parts(X, 6, solutions, objective="facility-location", optimizer="lazy")
    assert got.info["ground"] == "pool"
    ref, _ = _merge_on_the_pool(X, 6, solutions, "facility-location", "lazy")
    np.testing.assert_array_equal(got.indices, ref.indices)
    with pytest.raises(ValueError, match="needs the whole pool's rows; pass the pool as X"):
        worth.distributed.merge_parts(X[:30], 6, [np.arange(5)], objective="facility-location", pool_size=120)


@pytest.mark.parametrize("objective,pool_size,match", [
    ("vendi", 10, r"pool_size=10 must be an integer >= 50"),
    ("vendi", 50.0, r"pool_size=50.0 must be an integer"),
    ("facility-location", 500, r"'facility-location' depends on every row of the pool: pass the whole pool as X"),
    ("herding", 500, r"'herding' depends on every row"),
])
def test_pool_size_is_checked(objective, pool_size, match):
    X = make_instance("gaussian", n=50, m=4, seed=7)
    with pytest.raises(ValueError, match=match):
        worth.select(X, 3, objective, pool_size=pool_size)
    with pytest.raises(ValueError, match=match):
        worth.score(X, [0, 1], objective, pool_size=pool_size)


def test_pool_size_is_what_vendi_pool_divides_by():
    # vendi-pool's value is (−Σλlogλ + |S| log N)/N: the rows of a larger pool give the value of that pool.
    X = make_instance("gaussian", n=300, m=4, seed=8)
    idx = np.arange(0, 300, 25)
    assert worth.score(X[idx], np.arange(idx.size), "vendi-pool", pool_size=300) == pytest.approx(
        worth.score(X, idx, "vendi-pool"), rel=1e-12)
    assert worth.score(X[idx], np.arange(idx.size), "vendi-pool") != pytest.approx(
        worth.score(X, idx, "vendi-pool"), rel=1e-6)
