"""The greedy minimiser is the greedy minimiser: every pick checked against worth.score over all candidates,
its first pick against brute force, and its value below every random subset's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import worth
from worth.appraisal.minimise import greedy_minimise

OBJECTIVES = ["vendi", "entropy", "logdet", "power", "hybrid", "facility-location", "vendi-pool"]


def _reference(X, k, objective, labels=None, quota=None, seed=0):
    """The greedy minimiser by definition: worth.score of S ∪ {v} for every allowed v, ties by the seeded order."""
    rank = np.random.default_rng(seed).permutation(X.shape[0])
    S: list[int] = []
    for _ in range(k):
        cands = [v for v in range(X.shape[0]) if v not in S
                 and (quota is None or sum(labels[s] == labels[v] for s in S) < quota)]
        vals = np.array([worth.score(X, S + [v], objective, labels=labels) for v in cands])
        low = vals.min()
        ties = [v for v, f in zip(cands, vals) if f <= low + 1e-9 * max(1.0, abs(low))]
        S.append(min(ties, key=lambda v: rank[v]))
    return S


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(3)
    return rng.normal(size=(14, 5)), np.arange(14) % 3


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("balanced", [False, True])
def test_every_pick_is_the_greedy_minimum(pool, objective, balanced):
    X, labels = pool
    k = 7  # past m = 5: both the Gram and the covariance route are exercised
    quota = 3 if balanced else None
    got = greedy_minimise(X, k, objective, labels=labels, quotas="balanced" if balanced else None, seed=1)
    assert got.tolist() == _reference(X, k, objective, labels, quota, seed=1)
    if balanced:
        assert np.bincount(labels[got], minlength=3).max() <= 3


@pytest.mark.parametrize("objective", ["logdet", "facility-location", "vendi"])
def test_exhaustive_search_on_a_tiny_pool(objective):
    """n = 8, k = 3: the greedy minimum lies in the lowest tenth of all 56 subsets (greedy is not optimal, but a
    minimiser that were not minimising would sit near the middle)."""
    X = np.random.default_rng(0).normal(size=(8, 4))
    every = sorted(worth.score(X, list(p), objective) for p in itertools.combinations(range(8), 3))
    got = worth.score(X, greedy_minimise(X, 3, objective).tolist(), objective)
    assert got <= every[len(every) // 10]


@pytest.mark.parametrize("objective", ["vendi", "logdet", "facility-location"])
@pytest.mark.parametrize("sample", [None, 20])
def test_minimiser_scores_below_random_subsets(objective, sample):
    from sklearn.datasets import load_digits

    X, _ = load_digits(return_X_y=True)
    X = X[:300]
    k = 30
    low = worth.score(X, greedy_minimise(X, k, objective, sample=sample), objective)
    rng = np.random.default_rng(0)
    randoms = [worth.score(X, rng.choice(300, k, replace=False), objective) for _ in range(20)]
    assert low < min(randoms)


def test_init_continues_and_is_not_returned(pool):
    X, _ = pool
    got = greedy_minimise(X, 3, "logdet", init=[0, 1])
    assert 0 not in got and 1 not in got and got.size == 3
    vals = [worth.score(X, [0, 1, v], "logdet") for v in range(2, 14)]
    assert worth.score(X, [0, 1, int(got[0])], "logdet") == pytest.approx(min(vals))


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(k=0), "k=0"), (dict(k=20), "k=20"), (dict(sample=0), "sample=0"), (dict(quotas="even"), "quotas='even'"),
     (dict(objective="nope"), "unknown"), (dict(init=[0, 0]), "distinct"), (dict(quotas={0: 1}), "quotas allow")],
)
def test_bad_input(pool, kwargs, match):
    X, labels = pool
    args = {"k": 3, "objective": "logdet", "labels": labels, **kwargs}
    with pytest.raises(ValueError, match=match):
        greedy_minimise(X, **args)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.mark.parametrize("objective", OBJECTIVES + ["scaling-law"])
@pytest.mark.parametrize("case", ["exact", "sampled-past-full-rank", "balanced", "completion"])
def test_incremental_state_makes_the_recomputed_picks(digits, objective, case):
    """The default evaluation (the incremental state: rank-one updates, the closed form or the roots behind the
    quadrature screen) picks exactly what recomputing every candidate's value by eigvalsh picks."""
    X, y = digits
    kw = {"exact": dict(k=25, sample=None),
          "sampled-past-full-rank": dict(k=110, sample=16),  # m = 64: the covariance route and full rank
          "balanced": dict(k=60, sample=12, quotas="balanced"),
          "completion": dict(k=40, sample=12, init=np.arange(0, 600, 20),
                             quotas={c: 4 for c in range(10)})}[case]
    params = {"per_class": True} if objective == "scaling-law" else {}
    got = greedy_minimise(X, labels=y, objective=objective, seed=3, **kw, **params)
    want = greedy_minimise(X, labels=y, objective=objective, seed=3, evaluation="recompute", **kw, **params)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("similarity", ["cosine", "shifted-cosine", "rbf"])
@pytest.mark.parametrize("case", ["trunk", "balanced", "completion", "every-candidate"])
def test_facility_least_first_makes_the_full_evaluations_picks(digits, similarity, case, monkeypatch):
    """Facility location's minimiser evaluates exactly only the candidates its lower bounds do not rule out
    (``_LeastFirst``); its picks are those of evaluating every candidate (``evaluation="recompute"``), on a
    pool where most rows stay unsettled (short lists), and it does skip candidates (else it proves nothing)."""
    from worth.appraisal import minimise as mn
    from worth.facility import objective as fo

    X, y = digits
    kw = {"trunk": dict(k=80, sample=40), "balanced": dict(k=60, sample=24, quotas="balanced"),
          "completion": dict(k=40, sample=32, init=np.arange(0, 600, 20), quotas={c: 4 for c in range(10)}),
          "every-candidate": dict(k=25, sample=None)}[case]
    params = {"similarity": similarity, "gamma": 0.02}
    monkeypatch.setattr(fo, "_TOP_K", 16)  # short lists: rows settle late, as on Fashion-MNIST pixels
    want = greedy_minimise(X, labels=y, objective="facility-location", seed=4, evaluation="recompute", **kw,
                           **params)
    runs = []
    real = mn._LeastFirst.values

    def spy(self, cands):
        runs.append(self)
        return real(self, cands)

    monkeypatch.setattr(mn._LeastFirst, "values", spy)
    got = greedy_minimise(X, labels=y, objective="facility-location", seed=4, **kw, **params)
    np.testing.assert_array_equal(got, want)
    ev = runs[0]
    assert 0 < ev.solved < ev.screened


def test_facility_least_first_skips_only_candidates_above_the_minimum(digits, monkeypatch):
    """Each step's skipped candidates (reported as inf) have exact gains above the step's minimum plus the tie
    tolerance, and the evaluated ones are the state's own gains."""
    from worth.appraisal.minimise import _LeastFirst
    from worth.facility import objective as fo

    X, _ = digits
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    monkeypatch.setattr(fo, "_TOP_K", 16)
    ev = _LeastFirst(worth.get_objective("facility-location"), Xn, None, np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(0)
    chosen: list[int] = []
    skipped = 0
    for _ in range(60):
        cands = np.sort(rng.choice(np.setdiff1d(np.arange(X.shape[0]), chosen), 64, replace=False))
        vals = ev.values(cands)
        exact = ev.state.gains(cands)
        low = exact.min()
        done = np.isfinite(vals)
        np.testing.assert_allclose(vals[done], exact[done], rtol=1e-13, atol=1e-13)
        assert vals[done].min() == pytest.approx(low, rel=1e-13, abs=1e-13)
        assert np.all(exact[~done] > low + 1e-9 * max(1.0, low))
        skipped += int(np.count_nonzero(~done))
        pick = int(cands[np.argmin(exact)])
        chosen.append(pick)
        ev.add(pick)
    assert skipped > 0


def test_facility_states_sharing_a_first_pass_make_the_same_picks(digits):
    """Inside share_first_pass() facility location's maximisers, minimisers and completions fork one engine;
    their picks are those of states that each build their own."""
    from worth.facility.lists import share_first_pass

    X, y = digits

    def run():
        best = np.asarray(worth.select(X, 50, "facility-location").indices)
        return [best, np.asarray(worth.select(X, 50, "facility-location", labels=y, quotas="balanced").indices),
                greedy_minimise(X, 30, "facility-location", sample=16, seed=1),
                greedy_minimise(X, 20, "facility-location", sample=16, seed=1, init=best[:25])]

    alone = run()
    with share_first_pass():
        shared = run()
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a, b)


def test_evaluation_is_checked(pool):
    X, _ = pool
    with pytest.raises(ValueError, match="evaluation="):
        greedy_minimise(X, 2, "vendi", evaluation="fast")


@pytest.mark.parametrize("objective", ["vendi", "logdet", "power", "facility-location", "scaling-law"])
def test_minimiser_family_makes_each_greedy_minimise(digits, objective):
    """The branching run (one unconstrained trunk, a branch per balanced k where a class fills) equals one
    greedy_minimise per path: same seed, same sample, same picks."""
    from worth.appraisal.minimise import minimiser_family

    X, y = digits
    params = {"per_class": True} if objective == "scaling-law" else {}
    ks = [10, 40, 120]
    got = minimiser_family(X, y, objective, params, seed=2, sample=16, unconstrained=100, balanced=ks)
    np.testing.assert_array_equal(got[None], greedy_minimise(X, 100, objective, labels=y, sample=16, seed=2,
                                                             **params))
    for k in ks:
        want = greedy_minimise(X, k, objective, labels=y, quotas="balanced", sample=16, seed=2, **params)
        np.testing.assert_array_equal(got[k], want, err_msg=f"balanced k={k}")


def test_unit_rows_kept_shares_one_normalised_copy(digits):
    from worth.appraisal import minimise

    X, y = digits
    alone = greedy_minimise(X, 12, "vendi", sample=10, seed=4)
    with minimise.unit_rows_kept(X):
        first = minimise._unit_rows(X)
        assert minimise._unit_rows(X) is first and minimise._unit_rows(X.copy()) is not first
        np.testing.assert_array_equal(greedy_minimise(X, 12, "vendi", sample=10, seed=4), alone)
    assert minimise._UNIT == []
