"""Cross-checks with peers where they overlap: apricot-select (facility location), slogdet (log-det)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import worth
from worth._array import to_numpy


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("similarity", ["cosine", "shifted-cosine"])
def test_facility_location_equals_apricot_on_digits(digits, similarity):
    apricot = pytest.importorskip("apricot")
    G = digits @ digits.T
    S = np.maximum(G, 0) if similarity == "cosine" else (1 + G) / 2
    k = 50
    peer = apricot.FacilityLocationSelection(k, metric="precomputed", optimizer="naive").fit(S)
    ours = worth.select(digits, k, "facility-location", "lazy", similarity=similarity)
    np.testing.assert_array_equal(to_numpy(ours.indices), peer.ranking)
    # apricot reports gains as Σ_i max(S_ij, cur_i) − Σ_i cur_i: the same marginal gains
    np.testing.assert_allclose(to_numpy(ours.gains), peer.gains, rtol=1e-9)
    assert ours.value == pytest.approx(np.max(S[:, peer.ranking], axis=1).sum(), rel=1e-12)


def test_facility_location_equals_submodlib_on_digits(digits):
    submodlib = pytest.importorskip("submodlib")
    X = digits[:600]
    S = np.maximum(X @ X.T, 0)
    fl = submodlib.FacilityLocationFunction(n=600, mode="dense", sijs=S.astype(np.float32), separate_rep=False)
    peer = fl.maximize(budget=30, optimizer="NaiveGreedy", stopIfZeroGain=False, stopIfNegativeGain=False,
                       show_progress=False)
    ours = worth.select(X, 30, "facility-location", "lazy")
    np.testing.assert_array_equal(to_numpy(ours.indices), [j for j, _ in peer])
    np.testing.assert_allclose(to_numpy(ours.gains), [g for _, g in peer], rtol=1e-4)  # submodlib: float32


@pytest.mark.parametrize("sigma2", [1.0, 0.3])
def test_logdet_trajectory_equals_slogdet(digits, sigma2):
    sel = worth.select(digits, 25, "logdet", "lazy", sigma2=sigma2)
    idx = to_numpy(sel.indices)
    for t in (1, 10, 25):
        K = digits[idx[:t]] @ digits[idx[:t]].T
        sign, ld = np.linalg.slogdet(np.eye(t) + K / sigma2)
        assert sign == 1
        assert to_numpy(sel.values)[t - 1] == pytest.approx(ld, rel=1e-10)
