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


def _full_state(kind: str, m: int, seed: int):
    """A state past full rank (2m rows in) and further rows of the same instance."""
    X = make_instance(kind, n=2 * m + 5, m=m, seed=seed)
    C = X[:2 * m].T @ X[:2 * m]
    lam, U = np.linalg.eigh(C)
    keep = lam > 64 * m * np.finfo(float).eps * lam[-1]
    return lam[keep], np.ascontiguousarray(U[:, keep]), C, X[2 * m:]


@pytest.mark.parametrize("m", [64, 264])
@pytest.mark.parametrize("kind", KINDS)
def test_updates_past_full_rank_match_eigh(kind, m):
    """From a full-rank (or, ``lowrank``, rank-deficient) state at the sizes where the Löwner kernel runs on
    threads (m ≥ ``_PARALLEL_K``) and the rotation is split over rows: eigh's pairs, to rounding."""
    lam, U, C, rows = _full_state(kind, m, seed=11)
    spare = np.empty_like(U)
    for x in rows:
        C = C + np.outer(x, x)
        U_before = U.copy()
        new_lam, new_U = rank_one_update(lam, U, x, out=spare)
        np.testing.assert_array_equal(U, U_before)  # the input basis is not written
        spare, lam, U = U, new_lam, new_U
        ref = np.linalg.eigvalsh(C)
        scale = ref[-1]
        ref = ref[ref > 1e-11 * scale]
        np.testing.assert_allclose(lam[lam > 1e-11 * scale], ref, rtol=0, atol=1e-12 * scale)
        assert np.max(np.abs(U.T @ U - np.eye(U.shape[1]))) <= 1e-12
        assert np.max(np.abs(C @ U - U * lam)) <= 1e-12 * scale
        assert np.all(np.diff(lam) >= 0)


def test_update_writes_into_out_only_when_it_fits():
    lam, U, _, rows = _full_state("gaussian", 40, seed=2)
    out = np.empty_like(U)
    _, got = rank_one_update(lam, U, rows[0], out=out)
    assert got is out
    _, got = rank_one_update(lam, U, rows[0], out=U)  # never the input
    assert got is not U
    _, got = rank_one_update(lam, U, rows[0], out=np.empty((40, 3)))  # wrong shape: a new array
    assert got.shape == U.shape


def _loewner_reference(d, origins, taus, z):
    """The vectors as the previous kernel computed them: one ratio per factor, columns divided by their norm."""
    K = d.size
    mu_minus_d = (origins[None, :] - d[:, None]) + taus[None, :]  # [i, j] = μ_j − d_i
    gaps = d[None, :] - d[:, None]  # [i, j] = d_j − d_i
    zhat = np.empty(K)
    for i in range(K):
        prod = mu_minus_d[i, i]
        for j in range(K):
            if j != i:
                prod *= mu_minus_d[i, j] / gaps[i, j]
        zhat[i] = np.copysign(np.sqrt(max(prod, 0.0)), z[i])
    V = zhat[:, None] / -mu_minus_d
    return V / np.linalg.norm(V, axis=0)


@pytest.mark.parametrize("scale", [1.0, 1e-250, 3e250, 1e-30])
@pytest.mark.parametrize("K", [40, 264])
def test_loewner_kernels_match_the_ratio_by_ratio_reference(K, scale):
    """Serial and threaded kernels agree exactly; both match the previous ratio-by-ratio formula, at any scale
    of the spectrum (the chunked products are taken in power-of-two-scaled units)."""
    from worth.spectral import eigupdate as E

    rng = np.random.default_rng(K)
    d = np.sort(rng.gamma(0.5, size=K)) * scale
    z = rng.normal(size=K) * np.sqrt(scale)
    origins, taus = E._roots(d, z)
    W = E._loewner_serial(d, origins, taus, z)
    np.testing.assert_array_equal(W, E._loewner_parallel(d, origins, taus, z, 4))
    np.testing.assert_allclose(W.T, _loewner_reference(d, origins, taus, z), rtol=0, atol=1e-13)
    assert np.max(np.abs(W @ W.T - np.eye(K))) <= 1e-13


@pytest.mark.parametrize("kind", ["duplicates", "clustered", "near-degenerate"])
def test_deflated_routes_agree(kind, monkeypatch):
    """Deflated poles carried as unit columns through the one GEMM, or copied beside a smaller GEMM: the same pairs."""
    from worth.spectral import eigupdate as E

    m = 48
    X = make_instance(kind, n=3 * m, m=m, seed=4)
    results = {}
    for route, fraction in (("gemm", 1.0), ("gather", 0.0)):
        monkeypatch.setattr(E, "_GATHER_FRACTION", fraction)
        lam, U, C = np.zeros(0), np.zeros((m, 0)), np.zeros((m, m))
        for x in X:
            lam, U = rank_one_update(lam, U, x)
        results[route] = (lam, U)
    (lam_a, U_a), (lam_b, U_b) = results["gemm"], results["gather"]
    np.testing.assert_allclose(lam_a, lam_b, rtol=0, atol=1e-12 * lam_a[-1])
    C = X.T @ X
    for lam, U in results.values():
        assert np.max(np.abs(U.T @ U - np.eye(U.shape[1]))) <= 1e-12
        assert np.max(np.abs(C @ U - U * lam)) <= 1e-12 * lam[-1]


@pytest.mark.parametrize("m", [48, pytest.param(264, marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", ["secular", "quadrature"])
def test_stochastic_picks_with_updates_equal_picks_with_eigh(method, m):
    """Stochastic greedy past full rank (at m = 264 with the threaded Löwner kernel and the split rotation): the
    picks of the updated state are those of the state with a fresh eigh after every pick."""
    from worth.optimizers import stochastic

    X = make_instance("gaussian", n=8 * m, m=m, seed=8)
    obj = get_objective("vendi")
    fast = SpectralState(X, obj, method, np)
    slow = SpectralState(X, obj, method, np, eig_update=False)
    a = stochastic(fast, m + 40, seed=3)
    b = stochastic(slow, m + 40, seed=3)
    assert a.indices == b.indices
    assert fast.info["eig_update_seconds"] > 0
    np.testing.assert_allclose(a.values, b.values, rtol=1e-11)
    assert fast.U is not fast._spare
