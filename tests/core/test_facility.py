"""Facility location (dense on the fly, kNN), the neural scaling law, and the γ estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import worth
from tests.conftest import make_instance
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
    runs = [worth.select(digits[:600], 25, "facility-location", optimizer, block_size=b) for b in (1, 7, 128, None)]
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
