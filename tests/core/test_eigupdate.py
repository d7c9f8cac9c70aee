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
    """From a full-rank (or, ``lowrank``, rank-deficient) state at the sizes where the update runs its phases on
    threads (m ≥ ``_THREADED_K``): eigh's pairs, to rounding."""
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
    np.testing.assert_array_equal(W, E._loewner_threaded(d, origins, taus, z, E._edges(K, 4)))
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
    """Stochastic greedy past full rank (at m = 264 with the update's phases on threads): the
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


# -- the threaded route (issue 19): the serial route's result, and eigh's, on the hard states ---------------
def _state(case: str, m: int, seed: int):
    """``(lam, U, x)``: a state and an added row exercising one deflation case of the update.

    ``repeated``: eigenvalues in blocks of equal values (deflation by Givens rotations); ``zeros``: ``x`` with
    no component on a third of the eigenvectors (deflated by their zero weight); ``rank``: a rank-deficient
    state (``m/2`` pairs) and a row leaving its span (the zero pole joins); ``inside``: a rank-deficient state
    and a row inside its span; ``float32``: a float32 row; ``plain``: a general full-rank state.
    """
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.normal(size=(m, m)))[0]
    lam = np.sort(rng.gamma(0.7, size=m)) + 1e-3
    x = rng.normal(size=m)
    if case == "repeated":
        lam = np.repeat(np.sort(rng.gamma(2.0, size=m // 8)) + 0.1, 8)[:m]
        lam = np.concatenate([lam, np.full(m - lam.size, lam[-1])])
    elif case == "zeros":
        z = rng.normal(size=m)
        z[rng.permutation(m)[: m // 3]] = 0.0
        x = Q @ z
    elif case in ("rank", "inside"):
        r = m // 2
        lam, Q = lam[-r:], Q[:, :r]
        if case == "inside":
            x = Q @ rng.normal(size=r)
    elif case == "float32":
        x = x.astype(np.float32)
    return lam, np.ascontiguousarray(Q), x


UPDATE_CASES = ["plain", "repeated", "zeros", "rank", "inside", "float32"]


@pytest.mark.parametrize("m", [40, 200, 320])
@pytest.mark.parametrize("case", UPDATE_CASES)
def test_threaded_update_equals_serial_and_eigh(case, m):
    """One update of each hard state on 1 and on 3 threads: the same pairs (eigenvalues bit for bit), and both
    are eigh's of ``U diag(lam) Uᵀ + x xᵀ`` to rounding; the input basis is not written."""
    from worth.threads import blas_threads, run_threads

    lam, U, x = _state(case, m, seed=m)
    x64 = x.astype(np.float64)
    C = (U * lam) @ U.T + np.outer(x64, x64)
    U_before = U.copy()
    got = {}
    for threads in (1, 3):
        with run_threads(threads), blas_threads(1):
            got[threads] = rank_one_update(lam, U, x, out=np.empty_like(U))
    np.testing.assert_array_equal(U, U_before)
    np.testing.assert_array_equal(got[1][0], got[3][0])
    np.testing.assert_allclose(got[3][1], got[1][1], rtol=0, atol=1e-14)
    ref = np.linalg.eigvalsh(C)
    scale = ref[-1]
    ref = ref[ref > 1e-11 * scale]
    for new_lam, new_U in got.values():
        assert new_U.dtype == np.float64 and new_lam.dtype == np.float64
        np.testing.assert_allclose(new_lam[new_lam > 1e-11 * scale], ref, rtol=0, atol=1e-12 * scale)
        assert np.max(np.abs(new_U.T @ new_U - np.eye(new_U.shape[1]))) <= 1e-12
        assert np.max(np.abs(C @ new_U - new_U * new_lam)) <= 1e-12 * scale
        assert np.all(np.diff(new_lam) >= 0)
    if case == "inside":
        assert got[1][1].shape == U.shape  # no new direction
    if case == "rank":
        assert got[1][1].shape == (m, U.shape[1] + 1)


@pytest.mark.parametrize("K", [64, 200, 333])
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_threaded_roots_and_vectors_are_the_serial_ones_bit_for_bit(K, threads):
    """Roots solved in ranges on threads and the Löwner vectors in blocks: the serial kernels' values exactly,
    and the roots those of the gains' batch kernel, with and without a zero pole among the poles."""
    from worth.spectral import eigupdate as E
    from worth.spectral.secular import secular_roots_compiled

    rng = np.random.default_rng(K + threads)
    for lead in (False, True):
        d = np.sort(rng.gamma(0.5, size=K))
        if lead:
            d[0] = 0.0
        z = rng.normal(size=K)
        o1, t1 = E._roots(d, z, 1)
        o2, t2 = E._roots(d, z, threads)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(t1, t2)
        poles = d if lead else np.concatenate([[0.0], d])
        weights = (z * z if lead else np.concatenate([[0.0], z * z]))[None, :]
        o_ref, t_ref = (v[0] if lead else v[0, 1:] for v in secular_roots_compiled(poles, weights))
        np.testing.assert_array_equal(o1, o_ref)  # the gains' batch kernel, one candidate
        np.testing.assert_array_equal(t1, t_ref)
        W1 = E._loewner_vectors(d, o1, t1, z, 1)
        np.testing.assert_array_equal(W1, E._loewner_threaded(d, o1, t1, z, E._edges(K, threads)))


def test_solve_range_gives_each_root_what_the_whole_set_gives_it():
    """The secular solver over ranges of roots (the update's threads) against all roots at once, bit for bit,
    with deflated (zero-weight) poles among them; and the batch kernel (the gains) is unchanged by it."""
    from worth.spectral.secular import _solve_range, secular_roots_compiled

    rng = np.random.default_rng(5)
    K = 150
    poles = np.concatenate([[0.0], np.sort(rng.gamma(0.5, size=K - 1))])
    w = rng.random(K) ** 3
    w[rng.random(K) < 0.2] = 0.0
    origins, taus = secular_roots_compiled(poles, w[None, :])
    act = np.flatnonzero(w > 0)
    dA, wA, n = poles[act], w[act], act.size
    for edges in ([0, n], [0, 1, n], [0, n // 3, n // 2, n - 1, n]):
        o, t = np.empty(n), np.empty(n)
        for a, b in zip(edges[:-1], edges[1:]):
            _solve_range(dA, wA, n, a, b, o[a:b], t[a:b])
        np.testing.assert_array_equal(o, origins[0, act])
        np.testing.assert_array_equal(t, taus[0, act])


def test_chained_threaded_updates_match_eigh():
    """Forty updates chained on 2 threads from a full-rank m = 200 state (the bench's setting): eigh's pairs."""
    from worth.threads import blas_threads, run_threads

    lam, U, C, rows = _full_state("gaussian", 200, seed=3)
    spare = np.empty_like(U)
    with run_threads(2), blas_threads(1):
        for x in np.concatenate([rows, make_instance("clustered", n=35, m=200, seed=1)]):
            C = C + np.outer(x, x)
            new_lam, new_U = rank_one_update(lam, U, x, out=spare)
            spare, lam, U = U, new_lam, new_U
    ref = np.linalg.eigvalsh(C)
    np.testing.assert_allclose(lam, ref[-lam.size:], rtol=0, atol=1e-12 * ref[-1])
    assert np.max(np.abs(U.T @ U - np.eye(U.shape[1]))) <= 1e-12
    assert np.max(np.abs(C @ U - U * lam)) <= 1e-12 * ref[-1]


def test_loewner_products_unchanged_by_the_branch_free_loop():
    """The products' loop over ``i`` runs branch-free (the ``i == j`` factors are 1) so that it vectorises:
    the same ẑ as skipping ``i == j`` outright, bit for bit, for blocks that hold ``j`` and blocks that do not."""
    from worth.spectral import eigupdate as E

    rng = np.random.default_rng(9)
    K = 97
    d = np.sort(rng.gamma(0.5, size=K))
    z = rng.normal(size=K)
    origins, taus = E._roots(d, z)
    ds, os_, ts, prod, num, den = E._loewner_start(d, origins, taus)
    ref = prod.copy()
    for i in range(K):  # the skip-j formula, factor by factor in the kernel's order (chunks of _CHUNK)
        n_acc, d_acc = 1.0, 1.0
        for j in range(K):
            if j != i:
                n_acc *= (os_[j] - ds[i]) + ts[j]
                d_acc *= ds[j] - ds[i]
            if (j + 1) % E._CHUNK == 0 or j == K - 1:
                ref[i] *= n_acc / d_acc
                n_acc, d_acc = 1.0, 1.0
    for edges in ([0, K], [0, 30, 64, K]):
        got, num[:], den[:] = prod.copy(), 1.0, 1.0
        for a, b in zip(edges[:-1], edges[1:]):
            E._zhat_range(ds, os_, ts, got, num, den, a, b)
        np.testing.assert_array_equal(got, ref)
