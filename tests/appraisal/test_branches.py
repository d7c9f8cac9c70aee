"""One branching run makes every maximiser of an objective (unconstrained and class-balanced at each k) that
worth.select makes, bit for bit; a forked model picks independently of the one it was copied from."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from worth.appraisal.branches import fork_model, maximiser_family

OBJECTIVES = [("vendi", {}), ("entropy", {}), ("logdet", {}), ("power", {"alpha": 0.5}), ("hybrid", {}),
              ("facility-location", {}), ("scaling-law", {"per_class": True}), ("herding", {}), ("k-center", {})]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:900], y[:900]


@pytest.mark.parametrize("objective,params", OBJECTIVES)
def test_every_path_is_worth_selects(digits, objective, params):
    X, y = digits
    ks = [10, 30, 75, 150]  # quotas 1, 3, 8, 15: branches early and late, past the rank of the rows (m = 64)
    got = maximiser_family(X, y, objective, params, unconstrained=120, balanced=ks)
    want = np.asarray(worth.select(X, 120, objective, labels=y, **params).indices)
    np.testing.assert_array_equal(got[None], want)
    for k in ks:
        want = np.asarray(worth.select(X, k, objective, labels=y, quotas="balanced", **params).indices)
        np.testing.assert_array_equal(got[k], want, err_msg=f"balanced k={k}")


def test_balanced_only_and_a_prefix(digits):
    """Without an unconstrained path the trunk runs only as far as the branches need; a balanced k reached
    before any class fills is the trunk's prefix."""
    X, y = digits
    got = maximiser_family(X, y, "logdet", balanced=[5, 40])
    assert set(got) == {5, 40}
    for k in (5, 40):
        np.testing.assert_array_equal(got[k], worth.select(X, k, "logdet", labels=y, quotas="balanced").indices)


@pytest.mark.parametrize("objective", ["vendi", "facility-location"])
def test_a_fork_picks_independently(digits, objective):
    from worth.appraisal.branches import _setup
    from worth.optimizers import start_run

    X, y = digits
    _, model, optimizer = _setup(X, y, objective, {}, 40)
    run = start_run(optimizer, model)
    first = [run.step() for _ in range(15)]
    from worth.optimizers import Unconstrained

    twin = run.fork(fork_model(run.model), Unconstrained())
    a = [run.step() for _ in range(25)]
    b = [twin.step() for _ in range(25)]
    assert a == b  # the same state, the same picks, though each advanced its own copy
    want = np.asarray(worth.select(X, 40, objective).indices)
    assert first + a == want.tolist()
