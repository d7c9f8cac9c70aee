"""The rank-one eigen-update against ``eigh``: eigenvalues, orthogonality, residuals, and inside the state."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_instance
from worth.spectral.eigupdate import rank_one_update
from worth.spectral.state import SpectralState
from worth.registry import get_objective

KINDS = ["gaussian", "duplicates", "clustered", "lowrank", "near-degenerate"]


@pytest.mark.parametrize("kind", KINDS)
def test_updates_match_eigh(kind):
    """Row by row from the empty set past full rank: the updated pairs are eigh's to rounding."""
    m = 8
    X = make_instance(kind, n=30, m=m, seed=3)
    lam, U, C = np.zeros(0), np.zeros((m, 0)), np.zeros((m, m))
    for x in X:
        C += np.outer(x, x)
        lam, U = rank_one_update(lam, U, x)
        ref = np.linalg.eigvalsh(C)
        scale = ref[-1]
        ref = ref[ref > 1e-11 * scale]  # eigh's rounding-level "zeros" are not eigenvalues of the update
        big = lam[lam > 1e-11 * scale]
        np.testing.assert_allclose(big, ref, rtol=0, atol=1e-12 * scale)
        assert np.max(np.abs(U.T @ U - np.eye(U.shape[1]))) <= 1e-12
        assert np.max(np.abs(C @ U - U * lam)) <= 1e-12 * scale
        assert np.all(np.diff(lam) >= 0)


def test_update_keeps_rank_when_the_row_is_in_the_span():
    rng = np.random.default_rng(0)
    B = np.linalg.qr(rng.normal(size=(6, 3)))[0]
    lam, U = rank_one_update(np.zeros(0), np.zeros((6, 0)), B[:, 0])
    lam, U = rank_one_update(lam, U, B[:, 1])
    lam, U = rank_one_update(lam, U, 0.5 * B[:, 0] + 0.5 * B[:, 1])  # inside span(U): no new direction
    assert lam.size == 2 and U.shape == (6, 2)
    C = np.outer(B[:, 0], B[:, 0]) + np.outer(B[:, 1], B[:, 1]) + 0.25 * np.outer(B[:, 0] + B[:, 1], B[:, 0] + B[:, 1])
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(C)[-2:], atol=1e-14)


@pytest.mark.parametrize("method", ["secular", "quadrature", "sherman-morrison"])
def test_state_with_updates_equals_state_with_eigh(method):
    """Long run (past several refreshes): gains equal those of eigh-per-step; drift stays below 1e-12."""
    m = 24
    X = make_instance("gaussian", n=400, m=m, seed=5)
    obj = get_objective("power", alpha=0.5)
    fast = SpectralState(X, obj, method, np, eig_refresh=32)
    slow = SpectralState(X, obj, method, np, eig_update=False)
    cand = np.arange(300, 400)
    for step, i in enumerate(range(200)):
        fast.add(i)
        slow.add(i)
        if step % 40 == 39:
            np.testing.assert_allclose(fast.gains(cand), slow.gains(cand), rtol=1e-10)
    assert fast.info["eig_update_seconds"] > 0  # the update path ran
    assert 0 < fast.info["eig_orth_drift"] <= 1e-12
    assert fast.value == pytest.approx(slow.value, rel=1e-12)
