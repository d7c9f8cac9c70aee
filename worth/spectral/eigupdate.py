"""Rank-one update of an eigendecomposition: ``C + x xᵀ`` from the eigenpairs of ``C``, in O(m·K²).

Greedy adds one row per step, so ``C`` changes by a rank-one term. A fresh ``eigh`` of the m×m matrix costs
≈ 9m³ flops; the update below costs one m×K×K product (K ≤ m+1 the non-deflated poles) plus O(K²) for
the roots and vectors — the classical divide-and-conquer merge step (LAPACK ``dlaed2``/``dlaed3``):

1. Project: ``z = Uᵀx``; while ``C`` is rank-deficient the residual ``x − Uz`` (orthogonalised twice)
   extends the basis, with the zero eigenvalue as its pole.
2. Deflate (``dlaed2``): a negligible ``z_i`` leaves its eigenpair unchanged; two poles closer than the
   tolerance are rotated (Givens) so that one carries all the weight and the other is deflated.
3. Roots: the new eigenvalues are the secular equation's roots (:func:`worth.spectral.secular._solve_range`),
   each as a pole plus an offset, so every difference ``μ_j − d_i`` is accurate.
4. Vectors (Gu–Eisenstat, ``dlaed3``): recompute ``ẑ`` from the computed roots by Löwner's formula,
   ``ẑ_i² = Π_j (μ_j − d_i) / Π_{j≠i} (d_j − d_i)``, so that the computed roots are the *exact* eigenvalues
   of ``D + ẑẑᵀ``; its eigenvectors ``ẑ_i/(d_i − μ_j)`` are then orthogonal to working precision however
   close the roots, and ``U ← U V`` is one GEMM.

Past full rank that GEMM (m×K×K) is the floor of a pick; the rest is O(K²) and kept well below it: the Löwner
products as SIMD loops (one division per 8 factors; measured at K = 512: 0.09 ms, against 0.31 ms while
the loop stayed scalar), deflation compiled, the rotation written into the
caller's spare buffer (``out=``). From ``_THREADED_K`` poles every phase runs in blocks on the run's threads
(:func:`worth.threads.run_blocks`: ranges of roots, blocks of the Löwner products, then blocks of rows of
``W``, each thread rotating the columns of ``U V`` whose rows it wrote by one single-threaded BLAS call), with
the same result bit for bit as on one thread. Not numba's OpenMP pool: its workers spin after each region,
and a spinning worker held the core the next phase (BLAS, or the next region on a machine shared with other
processes) needed — on two cores the update was slower on both than on one (issue 19, ``bench/pick_update.py``,
which measures it against the GEMM).

Each update keeps the columns orthonormal to working precision, but rounding accumulates over many steps;
:class:`worth.spectral.state.SpectralState` measures ``‖UᵀU − I‖`` and falls back to a fresh ``eigh`` when it
passes a bound (see ``eig_refresh`` there).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..threads import available, matmul_rows, run_blocks
from .secular import _solve_range

_EPS = float(np.finfo(np.float64).eps)


def zero_weight_floor(m: int) -> float:
    """Relative size below which the part of a row outside ``range(C)`` is rounding, not a new direction.

    ``‖x − Uz‖² ≤ zero_weight_floor(m)·‖x‖²`` keeps the rank here; :class:`worth.spectral.state.SpectralState` zeroes the
    zero-cluster weight ``w₀`` by the same rule, so both agree on the rank of ``C + x xᵀ``.
    """
    return 64 * m * _EPS


_CHUNK = 8
"""Löwner factors multiplied before one division: 8 scaled factors stay inside float64's range (below)."""

_GATHER_FRACTION = 0.125
"""Above this fraction of deflated poles the deflated columns are copied, not carried through the GEMM."""


@numba.njit(cache=True, error_model="numpy", inline="always")
def _factor_range(num, den, ds, skip, oj, tj, dj):
    """``num[i] *= (o_j − d_i) + τ_j``, ``den[i] *= d_j − d_i`` over the (sliced) arrays, except ``i == skip``,
    whose factors are 1 (exact): one branch-free loop from 0, which LLVM vectorises — a loop from a runtime
    start, or split around ``skip``, stayed scalar (numba's negative-index wraparound)."""
    for i in range(ds.shape[0]):
        di = ds[i]
        fn = (oj - di) + tj
        fd = dj - di
        if i == skip:
            fn = 1.0
            fd = 1.0
        num[i] *= fn
        den[i] *= fd


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"}, inline="always")
def _sum_squares(v):
    """``Σ v_i²`` (reassociated: a norm, whose rounding does not depend on the order at this precision)."""
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return s


@numba.njit(cache=True, error_model="numpy", inline="always")
def _scaled_start(d, origins, taus):
    """``d``, ``origins``, ``taus`` times one power of two (exact) that brings the largest below 1, and the
    first Löwner factor ``μ_i − d_i`` of each ``i`` in those units; ``num``/``den`` set to 1."""
    K = d.shape[0]
    top = 0.0
    for i in range(K):
        top = max(top, abs(d[i]), abs(origins[i] + taus[i]))
    scale = 1.0
    if top > 0.0:
        scale = 2.0 ** (-math.ceil(math.log2(top)))
    ds = d * scale
    os_ = origins * scale
    ts = taus * scale
    prod = np.empty(K)
    for i in range(K):
        prod[i] = (os_[i] - ds[i]) + ts[i]
    return ds, os_, ts, prod, np.ones(K), np.ones(K)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _zhat_block(ds, os_, ts, prod, num, den, a, b):
    """``prod[i] *= Π_{j≠i} (μ_j − d_i)/(d_j − d_i)`` for ``a <= i < b``: one SIMD loop over ``i`` per ``j``,
    one division per ``_CHUNK`` factors."""
    K = ds.shape[0]
    n = b - a
    dsb, numb, denb, prodb = ds[a:b], num[a:b], den[a:b], prod[a:b]
    count = 0
    for j in range(K):
        _factor_range(numb, denb, dsb, j - a, os_[j], ts[j], ds[j])  # j - a outside [0, n): nothing skipped
        count += 1
        if count == _CHUNK or j == K - 1:
            for i in range(n):
                prodb[i] *= numb[i] / denb[i]
                numb[i] = 1.0
                denb[i] = 1.0
            count = 0


@numba.njit(cache=True, error_model="numpy", inline="always")
def _zhat(prod, z):
    """``ẑ_i = sign(z_i) √ẑ_i²`` of the scaled problem (its vectors are the unscaled problem's)."""
    K = prod.shape[0]
    zhat = np.empty(K)
    for i in range(K):
        zhat[i] = math.copysign(math.sqrt(max(prod[i], 0.0)), z[i])
    return zhat


@numba.njit(cache=True, error_model="numpy", inline="always")
def _vector_rows(d, origins, taus, zhat, W, a, b):
    """Rows ``a <= j < b`` of ``W``: ``ẑ_i/(d_i − μ_j)`` over ``i`` (contiguous, one division each), normalised."""
    K = d.shape[0]
    for j in range(a, b):
        oj, tj = origins[j], taus[j]
        row = W[j]
        for i in range(K):
            row[i] = zhat[i] / ((d[i] - oj) - tj)
        inv = 1.0 / math.sqrt(_sum_squares(row))
        for i in range(K):
            row[i] *= inv


@numba.njit(cache=True, error_model="numpy")
def _loewner_serial(d, origins, taus, z):
    """:func:`_loewner_vectors` on the calling thread."""
    K = d.shape[0]
    ds, os_, ts, prod, num, den = _scaled_start(d, origins, taus)
    _zhat_block(ds, os_, ts, prod, num, den, 0, K)
    W = np.empty((K, K))
    _vector_rows(ds, os_, ts, _zhat(prod, z), W, 0, K)
    return W


@numba.njit(cache=True, error_model="numpy")
def _loewner_start(d, origins, taus):
    """:func:`_scaled_start`, callable from Python (the threaded route's O(K) prologue)."""
    return _scaled_start(d, origins, taus)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _zhat_range(ds, os_, ts, prod, num, den, a, b):
    """:func:`_zhat_block` for ``a <= i < b``, without the GIL (one block of the threaded route)."""
    _zhat_block(ds, os_, ts, prod, num, den, a, b)


@numba.njit(cache=True, error_model="numpy")
def _zhat_of(prod, z):
    return _zhat(prod, z)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _rows_range(ds, os_, ts, zhat, W, a, b):
    """:func:`_vector_rows` for ``a <= j < b``, without the GIL (one block of the threaded route)."""
    _vector_rows(ds, os_, ts, zhat, W, a, b)


_THREADED_K = 192
"""From this many poles the update runs its phases on several threads (below, the hand-offs cost more)."""


def _edges(K: int, threads: int) -> list[int]:
    """Block boundaries of ``range(K)`` for ``threads`` threads (at least 64 indices a block)."""
    t = max(1, min(threads, K // 64))
    return [K * i // t for i in range(t + 1)]


def _update_threads(K: int) -> int:
    """Threads for an update with ``K`` poles: the run's (:func:`worth.threads.available`) from
    ``_THREADED_K`` poles, else one."""
    return available() if K >= _THREADED_K else 1


def _loewner_threaded(d, origins, taus, z, edges, rotate=None):
    """:func:`_loewner_serial` in blocks on the pool's threads (:func:`worth.threads.run_blocks`): the
    products by blocks of ``i``, then the rows of ``W`` by blocks of ``j``. Each entry is computed the same
    way whichever block holds it, so ``W`` is the serial kernel's bit for bit.

    ``rotate(W, a, b)``, when given, runs on the same thread right after rows ``a:b`` are written: the
    rotation's columns ``a:b`` (``U V[:, a:b] = U W[a:b]ᵀ``), so the GEMM needs no further hand-off.
    """
    K = d.shape[0]
    ds, os_, ts, prod, num, den = _loewner_start(d, origins, taus)
    run_blocks(lambda a, b: _zhat_range(ds, os_, ts, prod, num, den, a, b), edges)
    zhat = _zhat_of(prod, z)
    W = np.empty((K, K))

    def rows(a, b):
        _rows_range(ds, os_, ts, zhat, W, a, b)
        if rotate is not None:
            rotate(W, a, b)

    run_blocks(rows, edges)
    return W


def _loewner_vectors(d: np.ndarray, origins: np.ndarray, taus: np.ndarray, z: np.ndarray,
                     threads: int = 1) -> np.ndarray:
    """Eigenvectors of ``diag(d) + ẑẑᵀ`` with ``ẑ`` from Löwner's formula, as the rows of ``W`` (``V = Wᵀ``).

    ``d`` ascending, distinct; root ``j`` is ``origins[j] + taus[j]`` with ``origins[j]`` a pole, so
    ``μ_j − d_i = (origins[j] − d_i) + taus[j]`` keeps full relative precision.

    ``ẑ_i² = (μ_i − d_i) Π_{j≠i} (μ_j − d_i)/(d_j − d_i)``: the products run elementwise over ``i`` (one
    SIMD loop per ``j``), numerators and denominators multiplied apart and divided once every ``_CHUNK``
    factors. Every value is first scaled by a power of two (exact) so that the largest is below 1: a
    numerator factor is then at most 2 and a denominator factor at least ``≈ 4ε`` (the deflation
    tolerance), so ``_CHUNK = 8`` factors neither overflow nor underflow; the vectors, scale-free, are taken
    in the same units. Row ``j`` of ``W`` is ``ẑ_i/(d_i − μ_j)`` over ``i``, normalised: contiguous, one
    division per entry. On ``threads > 1`` (from ``_THREADED_K`` poles) blocks of ``i`` (and of ``j``) run
    on the pool's threads (:func:`_loewner_threaded`); the result is the same bit for bit.
    """
    if threads < 2 or d.shape[0] < _THREADED_K:
        return _loewner_serial(d, origins, taus, z)
    return _loewner_threaded(d, origins, taus, z, _edges(d.shape[0], threads))


@numba.njit(cache=True, error_model="numpy")
def _deflate(d, z, tol, norm_z, active, pairs, cs):
    """Deflation (``dlaed2``), in place on ``d``, ``z``, ``active``; the Givens rotations into ``pairs``/``cs``.

    A negligible ``z_i`` leaves its pair unchanged; two poles closer than ``tol`` are rotated so that the
    upper carries all the weight and the lower is deflated. Returns the number of rotations, to be applied
    in order to the basis columns (:func:`_apply_givens`).
    """
    K = d.shape[0]
    for i in range(K):
        active[i] = abs(z[i]) * norm_z > tol
    n_rot = 0
    prev = -1
    for i in range(K):
        if not active[i]:
            continue
        if prev >= 0:
            h = math.hypot(z[prev], z[i])
            c, s = z[i] / h, z[prev] / h
            if abs(c * s * (d[i] - d[prev])) <= tol:
                pairs[n_rot, 0], pairs[n_rot, 1] = prev, i
                cs[n_rot, 0], cs[n_rot, 1] = c, s
                n_rot += 1
                dp, di = d[prev], d[i]
                d[prev] = c * c * dp + s * s * di
                d[i] = s * s * dp + c * c * di
                z[prev], z[i] = 0.0, h
                active[prev] = False
        prev = i
    return n_rot


@numba.njit(cache=True, error_model="numpy")
def _apply_givens(basis, pairs, cs, n_rot):
    """The deflation's rotations, in order, on the columns of ``basis`` (row by row: contiguous)."""
    for row in range(basis.shape[0]):
        for r in range(n_rot):
            p, i = pairs[r, 0], pairs[r, 1]
            c, s = cs[r, 0], cs[r, 1]
            up, ui = basis[row, p], basis[row, i]
            basis[row, p] = c * up - s * ui
            basis[row, i] = s * up + c * ui


def _roots(d: np.ndarray, z: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Roots of ``diag(d) + z zᵀ`` (``d`` ascending and distinct, every ``z_i ≠ 0``) as origins and offsets.

    The active poles compacted as :func:`worth.spectral.secular.secular_roots_compiled` compacts them, and
    solved by its per-candidate solver (:func:`worth.spectral.secular._solve_range`) directly: that kernel is
    an OpenMP region even for one candidate, and waking its workers for a single candidate cost milliseconds
    beside other processes. On ``threads > 1`` (from ``_THREADED_K`` poles) ranges of roots are solved on the
    pool's threads; ``_solve_range`` gives each root what the whole set gives it, so the values are the same.
    """
    lead = d[0] == 0.0  # the zero pole is the secular solver's first pole; add an empty one if absent
    poles = np.ascontiguousarray(d if lead else np.concatenate([[0.0], d]), dtype=np.float64)
    w = z * z if lead else np.concatenate([[0.0], z * z])
    act = np.flatnonzero(w > 0.0)
    dA, wA = poles[act], np.ascontiguousarray(w[act], dtype=np.float64)
    n = act.size
    o, t = np.empty(n), np.empty(n)
    edges = _edges(n, threads) if threads > 1 and d.shape[0] >= _THREADED_K else [0, n]
    run_blocks(lambda a, b: _solve_range(dA, wA, n, a, b, o[a:b], t[a:b]), edges)
    if n == poles.size:
        origins, taus = o, t
    else:
        origins, taus = poles.copy(), np.zeros(poles.size)
        origins[act], taus[act] = o, t
    if not lead:
        origins, taus = origins[1:], taus[1:]
    return origins, taus


def _merge(d: np.ndarray, z: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``diag(d) + z zᵀ``: the roots, and the eigenvectors as the rows of ``W`` (``V = Wᵀ``)."""
    origins, taus = _roots(d, z, threads)
    return origins + taus, _loewner_vectors(d, origins, taus, z, threads)


def _merge_rotate(d: np.ndarray, z: np.ndarray, basis: np.ndarray, out: np.ndarray | None,
                  threads: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_merge` and the rotation ``basis @ V`` (nothing deflated: ``V`` is all of ``Wᵀ``) into ``out``.

    On one thread: the serial kernels and one BLAS call. On several: every phase in blocks on the pool's
    threads, each thread rotating the columns whose rows of ``W`` it wrote (one single-threaded BLAS call
    each, written straight into its columns of ``out``).
    """
    out = _out_for(basis, d.shape[0], out)
    origins, taus = _roots(d, z, threads)
    mu = origins + taus
    if threads < 2 or d.shape[0] < _THREADED_K:
        W = _loewner_serial(d, origins, taus, z)
        return mu, np.matmul(basis, W.T, out=out)

    def rotate(W, a, b):
        np.matmul(basis, W[a:b].T, out=out[:, a:b])

    _loewner_threaded(d, origins, taus, z, _edges(d.shape[0], threads), rotate)
    return mu, out


def _out_for(basis: np.ndarray, cols: int, out: np.ndarray | None) -> np.ndarray:
    """``out`` when it can hold ``basis @ V`` (``cols`` columns: C-contiguous float64), else a new array."""
    shape = (basis.shape[0], cols)
    if out is None or out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        out = np.empty(shape)
    return out


def _product(basis: np.ndarray, V: np.ndarray, out: np.ndarray | None, threads: int) -> np.ndarray:
    """``basis @ V`` into ``out`` (when its shape fits), split by rows over ``threads`` (:func:`worth.threads.matmul_rows`)."""
    return matmul_rows(basis, V, _out_for(basis, V.shape[1], out), threads=threads)


def rank_one_update(lam: np.ndarray, U: np.ndarray, x: np.ndarray, *,
                    out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``U diag(lam) Uᵀ + x xᵀ`` (its non-zero part), ascending.

    Parameters
    ----------
    lam : ndarray, shape (r,)
        Positive eigenvalues of ``C``, ascending.
    U : ndarray, shape (m, r)
        Orthonormal eigenvectors of ``C`` (columns). Not modified.
    x : ndarray, shape (m,)
        The added row.
    out : ndarray, optional
        Where to write the new eigenvectors when its shape is theirs (C-contiguous float64, not ``U``): the
        caller's spare buffer, so that a pick allocates no m×m array. Ignored otherwise.

    Returns
    -------
    lam_new : ndarray, shape (r,) or (r + 1,)
    U_new : ndarray, shape (m, r) or (m, r + 1)
        ``out`` where it was used.
    """
    m, r = U.shape
    z = U.T @ x
    xx = float(x @ x)
    d = np.array(lam, dtype=np.float64)
    basis = U
    if r < m:
        q = x - U @ z
        z2 = U.T @ q  # Gram–Schmidt twice ("twice is enough"): a small residual is orthogonal to U too
        q = q - U @ z2
        z = z + z2
        rho2 = float(q @ q)
        if rho2 > zero_weight_floor(m) * xx:
            basis = np.concatenate([(q / math.sqrt(rho2))[:, None], U], axis=1)
            d = np.concatenate([[0.0], d])
            z = np.concatenate([[math.sqrt(rho2)], z])
    K = d.size
    if K == 0:  # x = 0 added to C = 0: nothing to merge, the spectrum stays empty
        return d, basis
    if out is not None and np.may_share_memory(out, U):
        out = None
    z = np.array(z, dtype=np.float64)
    zz = float(z @ z)
    tol = 8.0 * _EPS * max(float(d[-1]), zz)
    active = np.empty(K, dtype=np.bool_)
    pairs = np.empty((K, 2), dtype=np.int64)
    cs = np.empty((K, 2))
    n_rot = _deflate(d, z, tol, math.sqrt(zz), active, pairs, cs)
    if n_rot:
        if basis is U:  # the caller's U is read-only here: copy before the first rotation
            basis = U.copy()
        _apply_givens(basis, pairs, cs, n_rot)
    act = np.flatnonzero(active)
    keep = np.flatnonzero(~active)
    threads = _update_threads(K)
    if keep.size == 0:  # the common case: nothing deflated, the roots come out ascending and positive
        return _merge_rotate(d, z, basis, out, threads)
    # Deflated poles keep their pair. The new pairs in ascending order, the non-positive dropped.
    mu_act, W = _merge(d[act], z[act], threads) if act.size else (np.zeros(0), np.zeros((0, 0)))
    mu = np.concatenate([d[keep], mu_act])
    source = np.flatnonzero(mu > 0.0)
    source = source[np.argsort(mu[source], kind="stable")]  # output column p is concatenated pair source[p]
    from_keep = source < keep.size
    p_keep, p_act = np.flatnonzero(from_keep), np.flatnonzero(~from_keep)
    if keep.size <= _GATHER_FRACTION * K:
        # Few deflated: one GEMM with their unit columns in it (multiplying by 1 and adding 0 is exact).
        V = np.zeros((K, source.size))
        V[keep[source[p_keep]], p_keep] = 1.0
        V[np.ix_(act, p_act)] = W[source[p_act] - keep.size].T
        return mu[source], _product(basis, V, out, threads)
    vecs = np.empty((m, source.size))
    vecs[:, p_keep] = basis[:, keep[source[p_keep]]]
    if p_act.size:
        vecs[:, p_act] = basis[:, act] @ W[source[p_act] - keep.size].T
    return mu[source], vecs
