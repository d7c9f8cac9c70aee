"""Greedy on the Vendi Score with lazy evaluations on the statistic's key (``worth.spectral.statkey``) is naive greedy."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance
from worth.constraints import run_constrained
from worth.spectral.state import SpectralState
from worth.registry import get_objective
from worth.optimizers import greedy
from worth.regime import Regime
from worth.spectral.statkey import key_sign
from worth.validation import prepare_rows


def _naive(X, k, q, method, **regime_args):
    """Reference: the plain greedy optimiser over every candidate at every step, as select() would set it up."""
    obj = get_objective("vendi", q=q)
    X64 = prepare_rows(X, np, normalize=True)
    regime = Regime(X64, np, k, obj, normalize=True, **regime_args)
    model, _ = regime.model(lambda rows: SpectralState(rows, obj, method, np, pool=X64.shape[0]))
    trace, _ = run_constrained(greedy, model, regime.k, available=regime.available, constraint=regime.constraint)
    return trace


@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered", "lowrank"])
@pytest.mark.parametrize("method", ["oracle", "secular", "quadrature"])
@pytest.mark.parametrize("q", [1.0, 0.5])
def test_keyed_greedy_is_naive_greedy(kind, method, q):
    X = make_instance(kind, n=60, m=8)
    k = 20  # past m: the full-rank phase too
    sel = worth.select(X, k, "vendi", "greedy", method=method, q=q)
    ref = _naive(X, k, q, method)
    assert sel.info["evaluation"] == "lazy-key"  # the keyed route ran
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_allclose(sel.values, ref.values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sel.gains, ref.gains, rtol=1e-8, atol=1e-10)
    assert sel.timings["evaluations"] < ref.evaluations
    assert sel.value == pytest.approx(worth.score(X, sel.indices, "vendi", q=q), rel=1e-10)


@pytest.mark.parametrize("q", [1.0, 0.5])
def test_keys_never_grow(q):
    """The keys are gains of a submodular statistic: along the greedy path no candidate's key increases."""
    X = make_instance("gaussian", n=50, m=6)
    X64 = prepare_rows(X, np, normalize=True)
    obj = get_objective("vendi", q=q)
    sign = key_sign(obj, np.sum(X64 * X64, axis=1))
    state = SpectralState(X64, obj, "secular", np)
    cand = np.arange(50)
    previous = sign * state.deltas(cand)
    for i in worth.select(X, 15, "vendi", "greedy", q=q).indices:
        state.add(int(i))
        keys = sign * state.deltas(cand)
        assert np.all(keys <= previous + 1e-10 * np.maximum(1.0, np.abs(previous)))
        previous = keys


@pytest.mark.parametrize("args", [{"init": [3, 7, 11]}, {"quotas": "balanced"}],
                         ids=["init", "quotas"])
def test_keyed_greedy_under_regimes(args):
    X = make_instance("gaussian", n=60, m=8)
    labels = np.arange(60) % 3
    regime = dict(args, labels=labels) if "quotas" in args else args
    sel = worth.select(X, 12, "vendi", "greedy", method="secular", **regime)
    ref = _naive(X, 12, 1.0, "secular", **regime)
    assert sel.info["evaluation"] == "lazy-key"
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_allclose(sel.values, ref.values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sel.gains, ref.gains, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name,params,norms,expected", [
    ("vendi", {}, "equal", -1),
    ("vendi", {"q": 0.5}, "equal", 1),
    ("vendi", {"q": 2.0}, "equal", None),  # Σλ^q with q > 1 is not submodular
    ("vendi", {}, "unequal", None),  # candidates would move tr C differently
    ("logdet", {}, "equal", None),  # submodular already: plain lazy applies
])
def test_key_sign(name, params, norms, expected):
    n2 = np.ones(10) if norms == "equal" else np.linspace(0.5, 2.0, 10)
    assert key_sign(get_objective(name, **params), n2) == expected


@pytest.mark.parametrize("args", [{"normalize": False}, {"costs": "ones", "budget": 5.0}],
                         ids=["unequal-norms", "knapsack"])
def test_naive_greedy_where_the_key_does_not_apply(args):
    # unequal norms, yet within worth.validation.UNIT_NORM_ATOL of 1 (Vendi refuses rows far from unit norm)
    X = make_instance("gaussian", n=40, m=6) * np.linspace(0.9998, 1.0002, 40)[:, None]
    if "costs" in args:
        args = dict(args, costs=np.ones(40))
    sel = worth.select(X, 5, "vendi", "greedy", method="secular", **args)
    assert sel.info["evaluation"] == "full"
    assert sel.timings["evaluations"] >= sum(40 - s for s in range(5))  # every candidate, every step
