"""Facility location (dense on the fly, kNN), the neural scaling law, and the γ estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import worth
from tests.helpers import make_instance
from worth._array import to_numpy


def similarity_matrix(X, similarity="cosine", gamma=1.0):
    """The explicit n×n similarity the on-the-fly code must reproduce (rows already unit length)."""
    G = X @ X.T
    if similarity == "cosine":
        return np.maximum(G, 0.0)
    if similarity == "shifted-cosine":
        return (1.0 + G) / 2.0
    d2 = np.maximum(np.sum(X * X, 1)[:, None] + np.sum(X * X, 1)[None, :] - 2 * G, 0.0)
    return np.exp(-gamma * d2)


def brute_force_greedy(S, k):
    """Greedy on an explicit similarity matrix: every gain Σ_i max(0, S[i, j] − cur_i), ties to the lowest j."""
    cur = np.zeros(S.shape[0])
    picks, values = [], []
    for _ in range(k):
        gains = np.maximum(S - cur[:, None], 0.0).sum(axis=0)
        gains[picks] = -np.inf
        best = gains.max()
        j = int(np.flatnonzero(gains >= best - 1e-9 * max(1.0, best, cur.sum()))[0])
        picks.append(j)
        cur = np.maximum(cur, S[:, j])
        values.append(cur.sum())
    return np.array(picks), np.array(values)


def unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits():
    return unit(load_digits().data.astype(np.float64))


@pytest.mark.parametrize("optimizer", ["greedy", "lazy"])
@pytest.mark.parametrize("similarity,gamma", [("cosine", 1.0), ("shifted-cosine", 1.0), ("rbf", 0.7)])
@pytest.mark.parametrize("kind", ["gaussian", "duplicates", "clustered"])
def test_equals_brute_force_on_small_sets(kind, similarity, gamma, optimizer):
    X = make_instance(kind, n=40, m=5, seed=3)
    picks, values = brute_force_greedy(similarity_matrix(X, similarity, gamma), 12)
    sel = worth.select(X, 12, "facility-location", optimizer, similarity=similarity, gamma=gamma)
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.values, values, rtol=1e-12)
    assert worth.score(X, picks, "facility-location", similarity=similarity, gamma=gamma) == pytest.approx(
        values[-1], rel=1e-12)


def test_equals_brute_force_on_digits(digits):
    picks, values = brute_force_greedy(similarity_matrix(digits), 40)
    sel = worth.select(digits, 40, "facility-location", "lazy")
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.values, values, rtol=1e-12)
    np.testing.assert_allclose(np.cumsum(sel.gains), sel.values, rtol=1e-10)


@pytest.mark.parametrize("optimizer", ["greedy", "lazy"])
def test_block_size_does_not_change_the_result(digits, optimizer):
    runs = [worth.select(digits[:600], 25, "facility-location", optimizer, block_size=b) for b in (1, 5, 128, None)]
    for sel in runs[1:]:
        np.testing.assert_array_equal(sel.indices, runs[0].indices)
        np.testing.assert_allclose(sel.values, runs[0].values, rtol=1e-12)


@pytest.mark.parametrize("similarity", ["cosine", "shifted-cosine", "rbf"])
def test_knn_with_k_equal_n_is_dense(similarity):
    X = make_instance("clustered", n=120, m=6, seed=5)
    dense = worth.select(X, 20, "facility-location", "lazy", similarity=similarity)
    knn = worth.select(X, 20, "facility-location", "lazy", similarity=similarity, neighbors=120)
    assert (dense.method, knn.method) == ("dense", "knn")
    np.testing.assert_array_equal(knn.indices, dense.indices)
    np.testing.assert_allclose(knn.values, dense.values, rtol=1e-12)


def test_knn_is_the_sparsified_objective_and_close_to_dense(digits):
    K = 30
    sel = worth.select(digits, 30, "facility-location", "lazy", neighbors=K)
    S = similarity_matrix(digits)
    order = np.argsort(-S, axis=1, kind="stable")[:, :K]  # the K most similar items cover each item
    sparse = np.zeros_like(S)
    np.put_along_axis(sparse, order, np.take_along_axis(S, order, axis=1), axis=1)
    ref = np.max(sparse[:, to_numpy(sel.indices)], axis=1).sum()
    assert sel.value == pytest.approx(ref, rel=1e-9)
    dense = worth.select(digits, 30, "facility-location", "lazy")
    assert worth.score(digits, sel.indices, "facility-location") >= 0.97 * dense.value


def test_float32_similarities_are_close(digits):
    ref = worth.select(digits, 30, "facility-location", "lazy")
    f32 = worth.select(digits, 30, "facility-location", "lazy", precision="float32")
    np.testing.assert_allclose(f32.values, ref.values, rtol=1e-6)
    assert np.mean(to_numpy(f32.indices) == to_numpy(ref.indices)) >= 0.9


def test_same_selection_on_every_namespace(xp):
    X = make_instance("clustered", n=50, m=6, seed=10)
    ref = worth.select(X, 10, "facility-location", "lazy")
    sel = worth.select(xp.asarray(X), 10, "facility-location", "lazy")
    assert type(sel.indices) is type(xp.asarray(X))
    np.testing.assert_array_equal(to_numpy(sel.indices), to_numpy(ref.indices))
    np.testing.assert_allclose(to_numpy(sel.values), to_numpy(ref.values), rtol=1e-12)


# -- maintained gains (NumPy, dense) --------------------------------------------------------------------

def fresh_gains(S, cur):
    """``Σ_i max(0, S[i, j] − cur_i)`` for every ``j``, from scratch."""
    return np.maximum(S - cur[:, None], 0.0).sum(axis=0)


@pytest.mark.parametrize("top_k", [1, 3, 40, 200])
@pytest.mark.parametrize("similarity,gamma", [("cosine", 1.0), ("shifted-cosine", 1.0), ("rbf", 0.7)])
def test_maintained_gains_equal_a_fresh_recomputation(similarity, gamma, top_k):
    """After every pick, through every route: list walks of settled rows, rows settling, and unsettled rows
    answered on demand (a small ``top_k`` leaves most rows unsettled; ``top_k = n`` settles every row at once)."""
    from worth.facility import FacilityState
    from worth.registry import get_objective

    X = make_instance("clustered", n=200, m=6, seed=7)
    S = similarity_matrix(X, similarity, gamma)
    obj = get_objective("facility-location", similarity=similarity, gamma=gamma, block_size=17)
    state = FacilityState(X, obj, np, top_k=top_k)
    rng = np.random.default_rng(0)
    cur = np.zeros(200)
    for step, p in enumerate(rng.permutation(200)[:60]):
        cand = np.sort(rng.choice(200, size=[3, 60, 200][step % 3], replace=False))
        np.testing.assert_allclose(state.gains(cand), fresh_gains(S, cur)[cand], rtol=1e-11, atol=1e-11)
        state.add(int(p))
        cur = np.maximum(cur, S[:, p])
        np.testing.assert_allclose(state.cur, cur, rtol=1e-13, atol=1e-14)
    lists = state.lists
    # g holds exactly the settled rows' share of every gain.
    settled = lists.settled
    np.testing.assert_allclose(lists.g, fresh_gains(S[settled], cur[settled]), rtol=1e-11, atol=1e-11)
    # A settled row's list holds every similarity above its running max (what makes g exact).
    for i in np.flatnonzero(settled):
        listed = set(lists.top_idx[i, :lists.count[i]].tolist())
        assert {j for j in np.flatnonzero(S[i] > cur[i])} <= listed
    if top_k == 1:
        assert lists.unsettled > 0 and lists.pairs_on_demand > 0
    if top_k == 200:
        assert lists.unsettled == 0 and lists.pairs_on_demand == 0


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("top_k", [1, 8, 40])
@pytest.mark.parametrize("similarity,gamma", [("cosine", 1.0), ("shifted-cosine", 1.0), ("rbf", 0.7)])
def test_gain_lower_bounds_are_below_every_gain(similarity, gamma, top_k, precision):
    """``lb − slack`` never exceeds the gain the state computes (nor the exact one), through every stage of a
    run: before the first pick (no bound: gains are look-ups), with rows unsettled, and with every row settled
    (no bound again); and it is not vacuous (positive for some candidate while rows are unsettled)."""
    from worth.facility import FacilityState
    from worth.registry import get_objective

    X = make_instance("clustered", n=300, m=6, seed=3)
    S = similarity_matrix(X, similarity, gamma)
    obj = get_objective("facility-location", similarity=similarity, gamma=gamma, precision=precision)
    state = FacilityState(X, obj, np, top_k=top_k)
    everyone = np.arange(300)
    state.gains(everyone)
    assert state.gain_lower_bounds(everyone) is None  # before the first pick: the gains are look-ups
    rng = np.random.default_rng(1)
    cur = np.zeros(300)
    informative = 0
    for p in rng.permutation(300)[:150]:
        state.add(int(p))
        cur = np.maximum(cur, S[:, p])
        bounds = state.gain_lower_bounds(everyone)
        gains = state.gains(everyone)
        if bounds is None:
            assert state.lists.unsettled == 0
            continue
        lb, slack = bounds
        assert slack >= 0.0
        assert np.all(lb - slack <= gains), (lb - slack - gains).max()
        assert np.all(lb - slack <= fresh_gains(S, cur) + (1e-4 if precision == "float32" else 1e-12))
        informative += int(np.count_nonzero(lb > slack + 1e-6))
    assert informative > 0


def test_gain_lower_bounds_are_absent_without_lists(digits):
    """The direct and kNN routes keep no lists: no bound, so a minimiser evaluates every candidate."""
    from worth.facility import FacilityState
    from worth.registry import get_objective

    for params in ({"neighbors": 10}, {}):
        state = FacilityState(digits[:200], get_objective("facility-location", **params), np)
        state.maintained = state.maintained and bool(params)  # {}: the direct route (what other namespaces use)
        state.gains(np.arange(200))
        state.add(3)
        assert state.gain_lower_bounds(np.arange(200)) is None


@pytest.mark.parametrize("top_k", [4, None])
@pytest.mark.parametrize("similarity,gamma", [("cosine", 1.0), ("shifted-cosine", 1.0), ("rbf", 0.3)])
def test_unnormalised_rows_equal_brute_force(similarity, gamma, top_k, monkeypatch):
    """Rows of unequal norms (``normalize=False``): similarities above 1 for the cosine, an RBF whose order
    within a row depends on the other row's norm; short lists leave rows unsettled for most of the run."""
    import worth.facility.objective as facility

    monkeypatch.setattr(facility, "_TOP_K", top_k)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(5, 8))[rng.integers(0, 5, 400)] + 0.4 * rng.normal(size=(400, 8))
    X *= rng.uniform(0.5, 2.0, size=(400, 1))
    picks, values = brute_force_greedy(similarity_matrix(X, similarity, gamma), 25)
    sel = worth.select(X, 25, "facility-location", "lazy", normalize=False, similarity=similarity, gamma=gamma)
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.values, values, rtol=1e-11)


def test_dense_run_reports_its_cost_drivers(digits):
    sel = worth.select(digits, 30, "facility-location", "lazy")
    d = sel.diagnostics
    assert d["pairs_first_pass"] == digits.shape[0] ** 2 and 1 <= d["list_length"] <= digits.shape[0]
    assert 0 <= d["unsettled_rows"] <= digits.shape[0] and d["pairs_on_demand"] >= 0
    assert worth.select(digits, 5, "facility-location", "lazy", neighbors=10).diagnostics == {}


def test_same_bits_whatever_the_thread_count(monkeypatch):
    """The GEMM tasks split over threads write disjoint outputs and sum in a fixed order."""
    import worth.facility.lists as lists
    import worth.facility.pool as pool

    X = make_instance("clustered", n=900, m=6, seed=4)
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(pool, "_threads", lambda: threads)
        monkeypatch.setattr(lists, "_PAR_MIN_WORK", 1)  # split even the small batches
        runs.append(worth.select(X, 40, "facility-location", "lazy", block_size=50))
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    np.testing.assert_array_equal(runs[0].values, runs[1].values)
    np.testing.assert_array_equal(runs[0].gains, runs[1].gains)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("count", [1, 5, 8, 20])
def test_few_candidates_split_by_columns_give_the_same_bits(monkeypatch, threads, count):
    """A few candidates' on-demand share is split over the threads by column tiles (each thread reads its part
    of the unsettled rows); the gains are bit for bit those of the split by candidates, and of one thread."""
    import worth.facility.lists as lists
    import worth.facility.pool as pool
    from worth.facility import FacilityState
    from worth.registry import get_objective

    X = unit(make_instance("clustered", n=12000, m=24, seed=5))
    state = FacilityState(X, get_objective("facility-location"), np, top_k=4)
    state.gains(np.arange(12000))
    for p in (3, 2800, 5600, 11999):
        state.add(p)
    monkeypatch.setattr(lists, "_PAR_MIN_WORK", 1)
    cand = np.random.default_rng(count).choice(12000, count, replace=False)
    got = {}
    for name, t, few in (("columns", threads, 1 << 30), ("candidates", threads, 0), ("one thread", 1, 0)):
        monkeypatch.setattr(pool, "_threads", lambda t=t: t)
        monkeypatch.setattr(lists, "_FEW_ROWS", few)
        got[name] = state.gains(cand)
    assert state.lists.unsettled > 9 * 1024  # more column tiles than a pairwise sum adds in order
    np.testing.assert_array_equal(got["columns"], got["candidates"])
    np.testing.assert_array_equal(got["columns"], got["one thread"])


def test_a_forked_child_runs_the_threaded_engine():
    """The pool of the parent is not the child's: after a fork the engine starts a new one (no hang)."""
    import multiprocessing as mp

    X = make_instance("clustered", n=600, m=5, seed=9)
    ref = worth.select(X, 15, "facility-location", "lazy", block_size=40)  # the parent's pool now exists
    with mp.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_select_indices, (X,)).get(timeout=120)
    np.testing.assert_array_equal(child, to_numpy(ref.indices))


def _select_indices(X):
    return to_numpy(worth.select(X, 15, "facility-location", "lazy", block_size=40).indices)


def test_list_keys_bound_the_walks():
    """``key`` is non-decreasing and ``v ≥ key_floor(a)`` exactly when ``key(v) ≥ key(a)``: a walk down a list
    sorted by key may stop at the first entry below ``key_floor(a)`` without skipping any entry above ``a``."""
    from worth.facility.lists import _key, _key_floor

    rng = np.random.default_rng(0)
    v = np.concatenate([[0.0, 1e-300, 2.0 ** -200, 2.0 ** 200, 1e300, 1.0, 0.5, np.nextafter(0.5, 0)],
                        rng.random(300), rng.random(100) * 1e-3, np.exp(rng.normal(0, 30, 100))])
    keys = np.array([_key(x) for x in v])
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(keys[order]) >= 0) and keys.min() >= 0 and keys.max() <= 0xFFFF
    floors = np.array([_key_floor(a) for a in v])
    assert np.all(floors <= v)
    np.testing.assert_array_equal(v[:, None] >= floors[None, :], keys[:, None] >= keys[None, :])


@pytest.mark.parametrize("kind", ["gaussian", "clustered"])
@pytest.mark.parametrize("n,top_k", [(300, 7), (300, 40), (1000, 25), (1000, 300)])
def test_lists_hold_every_similarity_above_their_threshold(kind, n, top_k):
    """The first pass's lists: sorted by key, within capacity, and complete above ``τ_i`` (sampled thresholds
    that overshoot are repaired by the quickselect), whatever the list length aimed at."""
    from worth.facility.lists import SettledLists, _fill_positions, _key

    X = make_instance(kind, n=n, m=5, seed=2)
    S = similarity_matrix(X)
    lists = SettledLists(X, np.einsum("ij,ij->i", X, X), np.zeros(n), (0, 1.0, 0.0, 1.0), top_k=top_k, block=64)
    np.testing.assert_allclose(lists.g0, S.sum(axis=0), rtol=1e-12)
    for i in range(n):
        c = lists.count[i]
        vals, idx = lists.top_val[i, :c], lists.top_idx[i, :c]
        assert c <= lists.top_val.shape[1] and np.all(np.diff([_key(v) for v in vals]) <= 0)
        np.testing.assert_allclose(vals, S[i, idx], rtol=1e-14)
        assert set(np.flatnonzero(S[i] > lists.tau[i] + 1e-15).tolist()) <= set(idx.tolist())
    if kind == "gaussian":  # no ties: the sampled threshold lands near the length aimed at
        assert 0.5 * top_k <= np.median(lists.count) <= 1.5 * top_k
    # The transposed lists (what a pick reads): column j's positions are exactly the rows listing j, in row
    # order; the int64 positions kept for lists past 2³¹ entries hold the same numbers.
    cap = lists.top_idx.shape[1]
    assert lists.rev_pos.dtype == np.int32
    rows = np.repeat(np.arange(n), lists.count)
    cols = np.concatenate([lists.top_idx[i, :lists.count[i]] for i in range(n)])
    order = np.lexsort((rows, cols))
    np.testing.assert_array_equal(lists.rev_ptr, np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))]))
    np.testing.assert_array_equal(lists.rev_pos // cap, rows[order])
    np.testing.assert_array_equal(lists.top_idx.ravel()[lists.rev_pos], cols[order])
    wide = np.empty(lists.rev_pos.size, dtype=np.int64)
    _fill_positions(lists.top_idx, lists.count, lists.rev_ptr, wide)
    np.testing.assert_array_equal(wide, lists.rev_pos)


@pytest.mark.parametrize("top_k", [1, 8, 128, 2000])
@pytest.mark.parametrize("optimizer", ["greedy", "lazy"])
def test_maintained_picks_equal_brute_force_for_every_list_length(digits, optimizer, top_k, monkeypatch):
    import worth.facility.objective as facility

    monkeypatch.setattr(facility, "_TOP_K", top_k)
    picks, values = brute_force_greedy(similarity_matrix(digits[:700]), 30)
    sel = worth.select(digits[:700], 30, "facility-location", optimizer)
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.values, values, rtol=1e-12)
    np.testing.assert_allclose(np.cumsum(sel.gains), sel.values, rtol=1e-10)


@pytest.mark.parametrize("regime", ["init", "quotas", "budget", "target", "candidates"])
@pytest.mark.parametrize("optimizer", ["greedy", "lazy"])
def test_maintained_gains_equal_direct_evaluation_under_every_regime(digits, regime, optimizer, monkeypatch):
    """The maintained path against the direct one (a GEMM per candidate, as before), same run otherwise."""
    import worth.facility.objective as facility

    X = digits[:500]
    y = load_digits().target[:500]
    rng = np.random.default_rng(1)
    options = {
        "init": {"init": [3, 77, 250]},
        "quotas": {"labels": y, "quotas": {0: 1, 1: 2, 5: 0}},
        "budget": {"costs": rng.uniform(0.5, 2.0, 500), "budget": 12.0, "k": None},
        "target": {"target": [10, 20, 30, 400]},
        "candidates": {"candidates": np.arange(100, 400, 3)},
    }[regime]
    k = options.pop("k", 20)
    runs = []
    for maintained in (True, False):
        monkeypatch.setattr(facility, "_MAINTAINED", maintained)
        monkeypatch.setattr(facility, "_TOP_K", 16)
        runs.append(worth.select(X, k, "facility-location", optimizer, **options))
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    np.testing.assert_allclose(runs[0].values, runs[1].values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(runs[0].gains, runs[1].gains, rtol=1e-9, atol=1e-10)


def test_maintained_float32_matches_direct_float32(digits, monkeypatch):
    import worth.facility.objective as facility

    runs = []
    for maintained in (True, False):
        monkeypatch.setattr(facility, "_MAINTAINED", maintained)
        runs.append(worth.select(digits, 40, "facility-location", "lazy", precision="float32"))
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    np.testing.assert_allclose(runs[0].values, runs[1].values, rtol=1e-6)


def test_bad_top_k_is_named():
    from worth.facility import FacilityState
    from worth.registry import get_objective

    with pytest.raises(ValueError, match="top_k"):
        FacilityState(make_instance("gaussian", 10, 3), get_objective("facility-location"), np, top_k=0)


@pytest.mark.parametrize("bad,match", [
    ({"similarity": "euclid"}, "similarity"), ({"gamma": -1.0}, "gamma"), ({"neighbors": 2.5}, "neighbors"),
    ({"block_size": 0}, "block_size"), ({"precision": "float16"}, "precision"),
])
def test_bad_parameters_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        worth.select(make_instance("gaussian", 10, 3), 2, "facility-location", **bad)


def test_spectral_method_is_refused_for_facility_location():
    with pytest.raises(ValueError, match="method='secular' applies to spectral objectives"):
        worth.select(make_instance("gaussian", 10, 3), 2, "facility-location", method="secular")


# -- the neural scaling law ----------------------------------------------------------------------------

def test_scaling_law_values():
    X = make_instance("gaussian", 12, 3)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 1, 0])
    S = [0, 1, 3, 5, 6, 7]
    law = lambda n: 2.0 * (1.0 - (n + 1.0) ** -0.3)  # noqa: E731  b=2, alpha=0.3, offset=1
    assert worth.score(X, S, "scaling-law", b=2.0, alpha=0.3) == pytest.approx(law(6), rel=1e-12)
    per_class = law(2) + law(1) + law(3)
    assert worth.score(X, S, "scaling-law", labels=y, per_class=True, b=2.0, alpha=0.3) == pytest.approx(per_class)


def test_scaling_law_per_class_greedy_balances_and_needs_labels():
    X = make_instance("gaussian", 30, 3)
    y = np.repeat([0, 1, 2], 10)
    sel = worth.select(X, 9, "scaling-law", "lazy", labels=y, per_class=True)
    assert np.bincount(y[to_numpy(sel.indices)], minlength=3).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="labels=y"):
        worth.select(X, 9, "scaling-law", per_class=True)


# -- the submodularity ratio estimate ------------------------------------------------------------------

def test_submodularity_ratio_estimate():
    X = make_instance("gaussian", 40, 5, seed=1)
    for name in ("logdet", "facility-location"):  # submodular: every sampled ratio is >= 1
        assert worth.submodularity_ratio(X, name, samples=60) >= 1 - 1e-9
    gamma = worth.submodularity_ratio(X, "hybrid", samples=60)
    assert 0 < gamma < np.inf
    assert worth.submodularity_ratio(X, "vendi", samples=300, seed=0) < 1  # not submodular: a violation seen


@pytest.mark.parametrize("target", [None, [0, 5]])
def test_select_lets_go_of_its_float64_rows_unless_mutual_information_needs_them(digits, target, monkeypatch):
    """The dense float32 path copies what it needs; the prepared float64 rows (205 MB at n = 100,000, m = 256)
    are released before the optimiser runs — except for a target, whose mutual information builds its states
    from them as it goes."""
    import weakref

    from worth.facility import FacilityState

    seen, alive = [], []
    init, gains = FacilityState.__init__, FacilityState.gains

    def spy_init(self, X, *args, **kwargs):
        seen.append(weakref.ref(X))
        init(self, X, *args, **kwargs)

    def spy_gains(self, cand):
        alive.append(any(ref() is not None for ref in seen))
        return gains(self, cand)

    monkeypatch.setattr(FacilityState, "__init__", spy_init)
    monkeypatch.setattr(FacilityState, "gains", spy_gains)
    X = digits.astype(np.float64)  # prepare_rows makes a float64 copy: only select can hold it
    sel = worth.select(X, 5, "facility-location", "lazy", precision="float32", target=target)
    assert alive and all(alive) == (target is not None) and any(alive) == (target is not None)
    value = worth.score(X, sel.indices, "facility-location", precision="float32", target=target)
    assert sel.values[-1] == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("neighbors", [None, 10])
def test_float32_rows_reach_the_state_without_a_float64_copy(digits, neighbors, monkeypatch):
    """Facility location keeps float32 input float32 (Objective.float32_rows): the state is handed float32 rows
    and, for unit rows, the caller's very array (no copy at all); its norms are float64."""
    from worth.facility import FacilityState

    got = []
    init = FacilityState.__init__

    def spy_init(self, X, *args, **kwargs):
        init(self, X, *args, **kwargs)
        got.append((X, self))

    monkeypatch.setattr(FacilityState, "__init__", spy_init)
    X = digits / np.linalg.norm(digits, axis=1, keepdims=True)
    X32 = X.astype(np.float32)
    worth.select(X32, 5, "facility-location", "lazy", precision="float32", neighbors=neighbors)
    rows, state = got[0]
    assert rows is X32 and state.norms2.dtype == np.float64
    if neighbors is not None:
        assert state.X is X32  # kNN mode: the rows only feed the graph, no copy


@pytest.mark.parametrize("similarity", ["cosine", "rbf"])
def test_knn_faiss_hnsw_graph_is_close_to_the_exact_one(digits, similarity):
    """ann='faiss-hnsw' (approximate) against the exact kNN graph: recall of the lists and the selection's value."""
    pytest.importorskip("faiss")
    from worth.facility.knn import neighbours

    X = digits / np.linalg.norm(digits, axis=1, keepdims=True)
    K = 20
    exact, approx = neighbours(X, K), neighbours(X, K, ann="faiss-hnsw")
    assert approx.shape == exact.shape and (approx >= 0).all()
    recall = np.mean([len(np.intersect1d(a, e)) / K for a, e in zip(approx, exact)])
    assert 0.9 <= recall <= 1.0
    ref = worth.select(X, 30, "facility-location", "lazy", similarity=similarity, neighbors=K)
    ann = worth.select(X, 30, "facility-location", "lazy", similarity=similarity, neighbors=K, ann="faiss-hnsw")
    np.testing.assert_allclose(np.cumsum(ann.gains), ann.values, rtol=1e-10)
    dense = [worth.score(X, s.indices, "facility-location", similarity=similarity) for s in (ann, ref)]
    assert dense[0] >= 0.98 * dense[1]


def test_knn_unknown_ann_backend_is_refused(digits):
    with pytest.raises(ValueError, match="ann"):
        worth.select(digits, 5, "facility-location", neighbors=10, ann="annoy")


@pytest.mark.parametrize("queries", [50, 2000])
def test_knn_recall_is_one_for_the_exact_graph_and_measures_hnsw(digits, queries):
    """knn_recall (what bench/scale.py reports): the exact graph scores 1 against its brute-force reference; the
    HNSW graph scores what a direct count of the shared neighbours gives; chunked brute force = one pass."""
    pytest.importorskip("faiss")
    from worth.facility.knn import exact_neighbours_of, knn_recall, neighbours

    K = 20
    exact = neighbours(digits, K)
    assert knn_recall(digits, exact, sample=queries)["recall"] == pytest.approx(1.0, abs=2e-3)  # distance ties
    q = np.arange(0, digits.shape[0], 7)
    np.testing.assert_array_equal(np.sort(exact_neighbours_of(digits, q, K, chunk=97), axis=1),
                                  np.sort(exact_neighbours_of(digits, q, K, chunk=10**6), axis=1))
    approx = neighbours(digits, K, ann="faiss-hnsw", threads=2, hnsw={"M": 8, "ef_construction": 16,
                                                                      "ef_search_per_k": 1, "ef_search_min": 20})
    r = knn_recall(digits, approx, sample=queries, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(digits.shape[0], size=min(queries, digits.shape[0]),
                                                   replace=False))
    direct = np.mean([np.intersect1d(approx[i], exact[i]).size / K for i in rows])
    assert r["sample"] == rows.size and r["K"] == K and 0 <= r["min"] <= r["recall"] < 1
    assert r["recall"] == pytest.approx(direct, abs=5e-3)


@pytest.mark.parametrize("similarity", ["cosine", "shifted-cosine", "rbf"])
@pytest.mark.parametrize("K", [1, 7, 64])
def test_knn_graph_csr_by_sort_equals_scipys_transpose(digits, similarity, K, monkeypatch):
    """The candidate-major CSR built by one stable sort is scipy's COO → CSR of the same pairs (sorted indices),
    also when the search misses some neighbours (-1)."""
    from scipy import sparse

    from worth.facility import knn

    real = knn.neighbours

    def holes(X, K, metric="euclidean", ann=None, **kw):
        nbr = real(X, K, metric, ann, **kw)
        nbr[::5, -1] = -1
        return nbr

    monkeypatch.setattr(knn, "neighbours", holes)
    state = worth.get_objective("facility-location", similarity=similarity, gamma=0.5, neighbors=K) \
        .make_state(digits, np)
    indptr, indices, data = state.graph
    n = digits.shape[0]
    nbr = holes(digits, K)
    found = nbr >= 0
    G = np.einsum("cm,ckm->ck", digits, digits[np.where(found, nbr, 0)])
    S = {"cosine": np.maximum(G, 0), "shifted-cosine": np.maximum(0.5 * G + 0.5, 0),
         "rbf": np.exp(-0.5 * np.maximum(2 - 2 * G, 0))}[similarity]
    ref = sparse.csr_matrix((S[found], (nbr[found], np.repeat(np.arange(n), K).reshape(n, K)[found])), shape=(n, n))
    ref.sort_indices()
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_allclose(data, ref.data, rtol=1e-12, atol=1e-12)
