"""Default greedy evaluates lazily wherever that is exact: the same picks and values as every-candidate greedy."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from tests.helpers import make_instance

SUBMODULAR = [name for name, p in worth.objectives().items() if p.submodular]
N, M, K = 48, 6, 12  # k > m: the full-rank phase too

REGIMES = {
    "plain": {},
    "quotas": {"quotas": {0: 2, 1: 6}},
    "balanced": {"quotas": "balanced"},
    "budget": {"costs": "costs", "budget": 7.0},
    "init": {"init": [3, 17, 30]},
    "init+quotas": {"init": [5], "quotas": "balanced"},
}


def _args(regime: dict) -> dict:
    args = dict(regime, labels=np.arange(N) % 3)
    if args.get("costs") == "costs":
        args["costs"] = np.random.default_rng(2).uniform(0.5, 1.5, size=N)
    return args


def _assert_same(lazy, full):
    np.testing.assert_array_equal(lazy.indices, full.indices)
    np.testing.assert_allclose(lazy.values, full.values, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lazy.gains, full.gains, rtol=1e-9, atol=1e-12)
    assert lazy.info.get("class_counts") == full.info.get("class_counts")
    assert lazy.info.get("singleton") == full.info.get("singleton")


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("name", SUBMODULAR)
def test_default_greedy_is_lazy_and_makes_full_greedys_picks(name, regime):
    X = make_instance("duplicates", n=N, m=M, seed=3)  # exact ties: the tie rule must agree too
    spectral = worth.objectives()[name].spectral
    method = {"method": "secular"} if spectral else {}  # one exact method for both: no rtol in the comparison
    args = _args(REGIMES[regime])
    lazy = worth.select(X, K, name, **method, **args)
    full = worth.select(X, K, name, evaluation="full", **method, **args)
    assert lazy.info["evaluation"] == "lazy"
    assert full.info["evaluation"] == "full"
    _assert_same(lazy, full)
    if name != "scaling-law":  # a count-only gain drops for every item at every pick: nothing to skip
        assert lazy.timings["evaluations"] < full.timings["evaluations"]


@pytest.mark.parametrize("kind", ["gaussian", "clustered", "lowrank"])
@pytest.mark.parametrize("name", [n for n in SUBMODULAR if worth.objectives()[n].spectral])
def test_auto_method_lazy_default_matches_full(name, kind):
    """``method='auto'`` resolves per evaluation (quadrature lazy, Sherman–Morrison full): same picks here."""
    X = make_instance(kind, n=60, m=8, seed=6)
    lazy = worth.select(X, 20, name)
    full = worth.select(X, 20, name, evaluation="full")
    np.testing.assert_array_equal(lazy.indices, full.indices)
    np.testing.assert_allclose(lazy.values, full.values, rtol=1e-9)


def test_facility_location_mutual_information_is_lazy():
    """``I(S; Q)`` of facility location is facility location on truncated similarities: submodular."""
    X = make_instance("gaussian", n=N, m=M, seed=5)
    lazy = worth.select(X, K, "facility-location", target=[1, 2, 40])
    full = worth.select(X, K, "facility-location", target=[1, 2, 40], evaluation="full")
    assert lazy.info["evaluation"] == "lazy"
    _assert_same(lazy, full)


@pytest.mark.parametrize("name,args,expected", [
    ("logdet", {"target": [1, 2]}, "full"),  # spectral mutual information is not submodular in general
    ("hybrid", {}, "full"),  # weakly submodular only
    ("vendi", {"q": 2.0}, "full"),  # Σλ^q, q > 1: no submodular key
    ("vendi", {}, "lazy-key"),
    ("vendi", {"costs": "costs", "budget": 7.0}, "full"),  # cost ratios do not follow the key
])
def test_full_evaluation_where_lazy_is_not_exact(name, args, expected):
    X = make_instance("gaussian", n=N, m=M, seed=5)
    if "costs" in args:
        args = dict(args, costs=np.random.default_rng(2).uniform(0.5, 1.5, size=N))
    sel = worth.select(X, K, name, **args)
    assert sel.info["evaluation"] == expected
    if expected == "full":
        ref = worth.select(X, K, name, evaluation="full", **args)
        np.testing.assert_array_equal(sel.indices, ref.indices)
        assert sel.timings["evaluations"] == ref.timings["evaluations"]


@pytest.mark.parametrize("optimizer,expected", [("lazy", "lazy"), ("stochastic", "sampled")])
def test_evaluation_reported_for_every_optimizer(optimizer, expected):
    sel = worth.select(make_instance("gaussian", n=30, m=4), 5, "logdet", optimizer, seed=0)
    assert sel.info["evaluation"] == expected


def test_forced_lazy_is_reported_as_inexact():
    sel = worth.select(make_instance("gaussian", n=30, m=4), 5, "hybrid", "lazy", force=True)
    assert sel.info["evaluation"] == "lazy-forced"


@pytest.mark.parametrize("kwargs,match", [
    ({"evaluation": "lazy"}, "evaluation='lazy' is unknown"),
    ({"evaluation": "full", "optimizer": "lazy"}, "evaluation='full' applies to optimizer='greedy'"),
])
def test_bad_evaluation_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        worth.select(make_instance("gaussian", n=10, m=3), 3, "logdet", **kwargs)
