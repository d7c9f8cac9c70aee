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
