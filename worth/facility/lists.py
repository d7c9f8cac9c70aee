"""Exact facility-location gains on the host: *settled* rows by their sorted lists, the others on demand.

The gain of a candidate ``j`` is a sum over ground rows, ``g_j = Σ_i max(0, s_ij − cur_i)``. This module
splits that sum by row, according to what is known about each row after one pass over all similarities:

- The **first pass** (a GEMM per block of rows, blocks spread over the cores) keeps, for every row ``i``, a
  list of its largest similarities, sorted, with their columns: *every* ``j`` with ``s_ij > τ_i``, for a
  threshold ``τ_i`` chosen from a sample of the row so that about ``K`` entries pass (a quickselect keeps
  the list within its capacity if the sample misjudged). The same pass sums the initial gains.
- A row is **settled** once ``cur_i ≥ τ_i``: every ``j`` outside its list has ``s_ij ≤ τ_i ≤ cur_i`` and
  contributes nothing, so the row's whole contribution to every gain is read off its list. Settled rows are
  accumulated in a maintained vector ``g``: a pick that raises ``cur_i`` from ``a`` to ``b`` takes
  ``min(s, b) − a`` from each list entry above ``a`` (a walk down the sorted list, stopping at the first
  ``s ≤ a``); a row that settles adds ``s − b`` for each entry above ``b``. ``cur`` only grows, so a settled
  row stays settled.
- **Unsettled** rows (those whose running max is still below ``τ_i``: early in a run, or rows far from every
  pick) contribute on demand: a gain query computes ``Σ_{i unsettled} max(0, s_ij − cur_i)`` for the queried
  candidates by a GEMM against those rows only. Nothing about them is maintained, so a row that improves
  many times while unsettled costs nothing until queried, and it never needs a full row recomputation.

A pick ``p`` needs ``s(i, p)`` only for the rows it can improve: those in ``p``'s own list (read off it), and
those with ``cur_i < τ_p`` (any other row has ``s_ip ≤ τ_p ≤ cur_i``), whose similarity is recomputed.

Why this order of work: on clustered data, lazy greedy evaluates most candidates during the first picks,
when nearly every row is unsettled, but each pick settles the rows of the cluster it covers. Measured on a
20-cluster mixture (n = 20,000, m = 64, k = 1,000, float32): see ``bench/peers.py`` and the notes. The
earlier design kept *all* rows in ``g`` and recomputed, by GEMM against the whole pool, every row whose
running max moved below its 128th similarity: 2.5–3.5 n row recomputations, three passes over all pairs
on top of the first.

Every similarity is computed from its inner product by :func:`worth.facility.similarity._sim` (one compiled function,
no fast-math), so a list holds the very numbers the direct evaluation produces; only the order of the
additions in a gain differs (sums are reassociated for speed), far inside the optimisers' tie tolerance.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numba
import numpy as np

from . import pool
from .similarity import _FAST, _RBF, _sim

LIST_BYTES = 160 << 20  # memory for the lists: (value float64, column int32) = 12 bytes per entry
LIST_MIN = 32
LIST_K = 256
_SAMPLE_RATIO = 4  # the threshold is read off a sample of about 4·K entries of the row
_REBUILD = 0.85  # rebuild the unsettled rows' copy once fewer than this fraction of it is still unsettled
_TILE_ELEMENTS = 1 << 19  # similarities per GEMM output tile (2–4 MB): reduced while still in cache
_MAX_BLOCK = 128  # rows per GEMM block: past this the block's output leaves the cache and nothing is gained
_PAR_MIN_WORK = 1 << 21  # multiply–adds from which a GEMM + reduction is split over threads
_FEW_ROWS = 16  # fewer candidates a thread than this: split the unsettled rows over the threads instead

def list_capacity(n: int, top_k: int | None) -> tuple[int, int]:
    """``(K, capacity)``: the list length aimed at, and the room kept per row (half as much again).

    By default ``K = LIST_K``, lowered so that the lists fit in :data:`LIST_BYTES`. Longer lists settle rows
    earlier but cost more in the first pass (measured on the 20-cluster mixture at n = 20,000: K = 128, 256,
    512 → 2.9, 2.8, 3.0 s).
    """
    if top_k is None:
        room = max(LIST_MIN, LIST_BYTES // (12 * max(n, 1)))
        K = max(1, min(LIST_K, (2 * room) // 3))
    else:
        K = int(top_k)
    cap = K + (K + 1) // 2
    return min(K, n), min(cap, n)


# -- kernels ------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _row_sims(Grow, kind, scale, shift, gamma, nr, norms2, out):
    """``out[q] = s`` from the inner products of one row (exact: no fast-math, so it vectorises elementwise).

    The loop is unswitched by hand on ``kind`` (a constant in each branch of the inlined :func:`_sim`): with
    the test inside, it does not vectorise and costs twice as much.
    """
    if kind == _RBF:
        for q in range(Grow.shape[0]):
            out[q] = _sim(Grow[q], _RBF, scale, shift, gamma, nr, norms2[q])
    else:
        for q in range(Grow.shape[0]):
            out[q] = _sim(Grow[q], 0, scale, shift, gamma, nr, norms2[q])


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _clipped_sum(s, lo, size):
    """``Σ_q max(0, s[q] − lo[q])`` over the first ``size`` entries (reassociated: it vectorises)."""
    acc = 0.0
    for q in range(size):
        d = s[q] - lo[q]
        acc += d if d > 0.0 else 0.0
    return acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _partition_top(v, ix, cnt, K):
    """Reorder ``v[:cnt]`` (and ``ix`` with it) so that ``v[:K]`` are its ``K`` largest; return the largest of
    the others (``−inf`` if none). Hoare quickselect, median-of-three pivot."""
    if K >= cnt:
        return -np.inf
    kk = K - 1
    lo, hi = 0, cnt - 1
    while lo < hi:
        mid = (lo + hi) // 2
        a, b, c = v[lo], v[mid], v[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while v[i] > pivot:
                i += 1
            while v[j] < pivot:
                j -= 1
            if i <= j:
                v[i], v[j] = v[j], v[i]
                ix[i], ix[j] = ix[j], ix[i]
                i += 1
                j -= 1
        if kk <= j:
            hi = j
        elif kk >= i:
            lo = i
        else:
            break
    rest = -np.inf
    for t in range(K, cnt):
        if v[t] > rest:
            rest = v[t]
    return rest


_TILE = 512  # similarities per tile: computed exactly into an L1 scratch, then reduced and scanned
_CHUNK = 32  # the scan for list entries skips chunks whose maximum is at or below the threshold


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _sum_and_hits(s, lo, w, thr, hits):
    """``Σ_q max(0, s[q] − lo[q])`` over ``w`` entries, and into ``hits[c]`` how many entries of chunk ``c``
    (``_CHUNK`` long) exceed ``thr``: counting vectorises, a running maximum (a serial chain) does not."""
    acc = 0.0
    for q in range(w):
        d = s[q] - lo[q]
        acc += d if d > 0.0 else 0.0
    for c in range((w + _CHUNK - 1) // _CHUNK):
        h = 0
        for q in range(c * _CHUNK, min(w, (c + 1) * _CHUNK)):
            h += 1 if s[q] > thr else 0
        hits[c] = h
    return acc


_TINY = 2.0 ** -200
_HUGE = 2.0 ** 200


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _key(v):
    """A 16-bit key, non-decreasing in ``v ≥ 0``: the binary exponent and 7 bits of mantissa (the slot of
    ``v`` among 128 per binade; everything below 2⁻²⁰⁰ shares key 0, everything above 2²⁰⁰ the top key).

    Lists are sorted by it, so a walk bounded below by ``a`` may stop at the first entry under
    :func:`_key_floor` ``(a)``, the smallest value with ``a``'s key; it visits at most a few extra entries
    (same slot, at or below ``a``), which add nothing (every update is clipped at 0). Counting passes on
    16-bit keys sort without the branch mispredictions of a comparison sort on random data.
    """
    if v <= _TINY:
        return 0
    if v >= _HUGE:
        return 0xFFFF
    m, e = math.frexp(v)
    return (e + 200) * 128 + int(m * 256.0) - 127


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _key_floor(a):
    """The smallest value whose :func:`_key` equals ``a``'s (``v ≥ _key_floor(a)`` iff ``key(v) ≥ key(a)``)."""
    if a <= _TINY:
        return 0.0
    if a >= _HUGE:
        return _HUGE
    m, e = math.frexp(a)
    return math.ldexp(int(m * 256.0) / 256.0, e)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _byte_offsets(keys, cnt, shift, hist):
    """Into ``hist``: where each byte value ``(key >> shift) & 0xFF`` starts in a stable counting sort."""
    hist[:] = 0
    for t in range(cnt):
        hist[(keys[t] >> shift) & 0xFF] += 1
    total = 0
    for d in range(256):
        c = hist[d]
        hist[d] = total
        total += c


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sort_by_key_desc(v, ix, cnt, tv, ti):
    """Write ``v[:cnt]`` (and ``ix``) into ``tv``/``ti`` in descending :func:`_key` order: two stable counting
    passes of 8 bits each (branch-free, unlike a comparison sort on random data)."""
    keys = np.empty(cnt, dtype=np.int64)
    for t in range(cnt):
        keys[t] = 0xFFFF - _key(v[t])  # ascending order of this = descending order of the key
    tmp_v = np.empty(cnt, dtype=np.float64)
    tmp_i = np.empty(cnt, dtype=np.int32)
    tmp_k = np.empty(cnt, dtype=np.int64)
    hist = np.empty(256, dtype=np.int64)
    _byte_offsets(keys, cnt, 0, hist)  # low byte into the scratch
    for t in range(cnt):
        d = keys[t] & 0xFF
        o = hist[d]
        hist[d] = o + 1
        tmp_v[o] = v[t]
        tmp_i[o] = ix[t]
        tmp_k[o] = keys[t]
    _byte_offsets(tmp_k, cnt, 8, hist)  # high byte into the output
    for t in range(cnt):
        d = tmp_k[t] >> 8
        o = hist[d]
        hist[d] = o + 1
        tv[o] = tmp_v[t]
        ti[o] = tmp_i[t]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _thresholds(Gs, start, cols, kind, scale, shift, gamma, norms2, r, thr):
    """Per row of a block: about the ``r``-th largest similarity of its sample ``Gs`` (columns ``cols``).

    A 256-bin histogram between 0 and the sample's maximum; the threshold is the lower edge of the bin that
    holds the ``r``-th largest, so slightly more than ``r`` sample entries pass it. Any threshold is correct
    (the list is whatever lies above it); this one only aims at the list length.
    """
    ns = Gs.shape[1]
    samp = np.empty(ns, dtype=np.float64)
    hist = np.zeros(257, dtype=np.int64)
    for b in range(Gs.shape[0]):
        nr = norms2[start + b]
        top = 0.0
        for t in range(ns):
            v = _sim(Gs[b, t], kind, scale, shift, gamma, nr, norms2[cols[t]])
            samp[t] = v
            top = max(top, v)
        if top <= 0.0:
            thr[b] = 0.0
            continue
        hist[:] = 0
        f = 256.0 / top
        for t in range(ns):
            hist[min(256, int(samp[t] * f))] += 1
        seen = 0
        d = 256
        while d > 0:
            seen += hist[d]
            if seen >= r:
                break
            d -= 1
        thr[b] = d / f


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _first_pass_tile(Gt, start, j0, cur, kind, scale, shift, gamma, norms2, K, thr, acc, bv, bi, cnt):
    """Columns ``j0 … j0+w`` of a block of rows: add to each row's clipped sum against ``cur`` (its initial
    gain, the similarity being symmetric) and append the entries above its threshold to its buffer."""
    B, w = Gt.shape
    cap = bv.shape[1]
    s = np.empty(_TILE, dtype=np.float64)
    hits = np.empty(_TILE // _CHUNK + 1, dtype=np.int64)
    for b in range(B):
        nr = norms2[start + b]
        for t0 in range(0, w, _TILE):
            tw = min(_TILE, w - t0)
            c0 = j0 + t0
            _row_sims(Gt[b, t0:t0 + tw], kind, scale, shift, gamma, nr, norms2[c0:c0 + tw], s)
            acc[b] += _sum_and_hits(s, cur[c0:c0 + tw], tw, thr[b], hits)
            for c in range((tw + _CHUNK - 1) // _CHUNK):
                if hits[c] == 0:  # (a threshold raised inside this tile only makes hits an over-count)
                    continue
                for q in range(c * _CHUNK, min(tw, (c + 1) * _CHUNK)):
                    v = s[q]
                    if v > thr[b]:
                        if cnt[b] == cap:  # the sample was optimistic: keep the K largest, raise the threshold
                            thr[b] = _partition_top(bv[b], bi[b], cap, K)
                            kept = 0
                            for t in range(K):
                                if bv[b, t] > thr[b]:
                                    bv[b, kept] = bv[b, t]
                                    bi[b, kept] = bi[b, t]
                                    kept += 1
                            cnt[b] = kept
                            if not v > thr[b]:
                                continue
                        bv[b, cnt[b]] = v
                        bi[b, cnt[b]] = c0 + q
                        cnt[b] += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _first_pass_finish(start, thr, acc, bv, bi, cnt, g0, top_val, top_idx, count, tau):
    for b in range(cnt.size):
        i = start + b
        c = cnt[b]
        _sort_by_key_desc(bv[b], bi[b], c, top_val[i], top_idx[i])
        count[i] = c
        tau[i] = thr[b]
        g0[i] = acc[b]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _column_counts(top_idx, count):
    """``ptr`` of :func:`_transpose_lists`: ``ptr[j + 1] − ptr[j]`` rows hold column ``j`` in their list."""
    n = top_idx.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        for q in range(count[i]):
            ptr[top_idx[i, q] + 1] += 1
    for j in range(n):
        ptr[j + 1] += ptr[j]
    return ptr


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fill_positions(top_idx, count, ptr, pos):
    n, cap = top_idx.shape
    fill = ptr[:-1].copy()
    for i in range(n):
        for q in range(count[i]):
            j = top_idx[i, q]
            pos[fill[j]] = i * cap + q
            fill[j] += 1


def _transpose_lists(top_idx, count):
    """Where each column appears: ``pos[ptr[j]:ptr[j+1]]`` are flat positions ``i·cap + q`` with
    ``top_idx[i, q] = j`` (the rows whose list holds ``j``). Positions are int32 whenever they fit (they do
    whenever the lists fit in :data:`LIST_BYTES`); int64 positions were a fifth of the engine's memory at
    ``K = 256``."""
    ptr = _column_counts(top_idx, count)
    small = top_idx.size < np.iinfo(np.int32).max
    pos = np.empty(int(ptr[-1]), dtype=np.int32 if small else np.int64)
    _fill_positions(top_idx, count, ptr, pos)
    return ptr, pos


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _walk(i, lo, hi, sign, top_val, top_idx, count, g):
    """``g[j] += sign · (min(s_ij, hi) − lo)`` for every entry of row ``i``'s list above ``lo``.

    A row settling at ``b`` adds its share (``lo = b``, ``hi = ∞``, ``+``); a settled row raised from ``a``
    to ``b`` takes back what it no longer gives (``lo = a``, ``hi = b``, ``−``). The walk stops at the first
    entry below ``lo``'s key (the list is sorted by key).
    """
    stop = _key_floor(lo)
    for q in range(count[i]):
        s = top_val[i, q]
        if s < stop:
            break
        if s > lo:
            g[top_idx[i, q]] += sign * ((s if s < hi else hi) - lo)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _settle_all(rows, cur, top_val, top_idx, count, g):
    """Add the contributions of newly settled ``rows`` at their running max."""
    for t in range(rows.size):
        _walk(rows[t], cur[rows[t]], np.inf, 1.0, top_val, top_idx, count, g)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _dot(X, i, p):
    acc = 0.0
    for k in range(X.shape[1]):
        acc += X[i, k] * X[p, k]
    return acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pick(X, p, kind, scale, shift, gamma, norms2, cur, settled, tau, top_val, top_idx, count, g, rev_ptr, rev_pos,
          u_rows):
    """Commit pick ``p``: every row it improves, its list walk or settlement, and ``cur``.

    A settled row ``i`` can only improve if ``s_ip > cur_i ≥ τ_i``, i.e. if ``p`` is in its list: those rows
    are read off the transposed lists. An unsettled row's similarity is recomputed (``u_rows`` holds them,
    with rows settled since it was copied). Returns the number of rows improved.
    """
    cap = top_val.shape[1]
    size = rev_ptr[p + 1] - rev_ptr[p] + u_rows.size
    rows = np.empty(size, dtype=np.int64)
    vals = np.empty(size, dtype=np.float64)
    c = 0
    for r in range(rev_ptr[p], rev_ptr[p + 1]):
        f = rev_pos[r]
        i = f // cap
        if settled[i]:
            s = top_val[i, f - i * cap]
            if s > cur[i]:
                rows[c] = i
                vals[c] = s
                c += 1
    npp = norms2[p]
    for t in range(u_rows.size):
        i = u_rows[t]
        if not settled[i]:
            s = _sim(_dot(X, i, p), kind, scale, shift, gamma, norms2[i], npp)
            if s > cur[i]:
                rows[c] = i
                vals[c] = s
                c += 1
    for t in range(c):
        i = rows[t]
        a = cur[i]
        b = vals[t]
        if settled[i]:
            _walk(i, a, b, -1.0, top_val, top_idx, count, g)
        elif b >= tau[i]:  # settles now: its contribution from here on is read off its list
            settled[i] = True
            _walk(i, b, np.inf, 1.0, top_val, top_idx, count, g)
        cur[i] = b
    return c


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unsettled_block(Gc, cand_norms, row_norms, lo, kind, scale, shift, gamma, out):
    """``out[t] += Σ_q max(0, s(row q, candidate t) − lo_q)`` (``lo = ∞`` for rows settled since the copy)."""
    s = np.empty(_TILE, dtype=np.float64)
    u = Gc.shape[1]
    for t in range(Gc.shape[0]):
        acc = 0.0
        for q0 in range(0, u, _TILE):
            w = min(_TILE, u - q0)
            _row_sims(Gc[t, q0:q0 + w], kind, scale, shift, gamma, cand_norms[t], row_norms[q0:q0 + w], s)
            acc += _clipped_sum(s, lo[q0:q0 + w], w)
        out[t] += acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unsettled_list_share(cand, cur, settled, top_val, top_idx, count, out):
    """``out[t] = Σ max(0, s − cur_q)`` over the entries ``(q, s)`` of row ``cand[t]``'s list whose row ``q`` is
    not settled: part of the unsettled rows' share of ``cand[t]``'s gain (the similarity is symmetric), so a
    lower bound on that share, at ``O(K)`` a candidate instead of a GEMM row against every unsettled row."""
    for t in range(cand.size):
        j = cand[t]
        acc = 0.0
        for q in range(count[j]):
            i = top_idx[j, q]
            if not settled[i]:
                d = top_val[j, q] - cur[i]
                if d > 0.0:
                    acc += d
        out[t] = acc


# -- the engine ---------------------------------------------------------------------------------------

class SettledLists:
    """Maintained facility-location gains over the rows of ``X`` (host arrays), from the running max ``cur``.

    Parameters
    ----------
    X : ndarray, shape (n, m)
        float32 or float64 rows (the GEMM precision).
    norms2 : ndarray of float64
        Squared row norms (the RBF needs them).
    cur : ndarray of float64
        The running maximum; updated in place by :meth:`add`.
    kernel_args : tuple
        ``(kind, scale, shift, gamma)`` of :func:`worth.facility.similarity._sim`.
    top_k : int or None
        List length aimed at per row (``None``: :data:`LIST_K`, shortened to fit :data:`LIST_BYTES`).
    block : int
        Rows per GEMM block (at most :data:`_MAX_BLOCK`: a block's output should stay in cache).

    Attributes
    ----------
    settled : ndarray of bool
        Rows whose contribution is maintained in :attr:`g`.
    pairs_on_demand : int
        Candidate × unsettled-row pairs evaluated by the gain queries so far (a cost diagnostic).
    """

    def __init__(self, X, norms2, cur, kernel_args, *, top_k, block):
        self.X, self.norms2, self.cur, self.args = X, norms2, cur, kernel_args
        n = self.n = X.shape[0]
        self.K, cap = list_capacity(n, top_k)
        self.block = max(1, min(block, _MAX_BLOCK))
        self.XT = np.ascontiguousarray(X.T)  # GEMMs against (m, n): faster than against a transposed view
        self.top_val = np.empty((n, cap), dtype=np.float64)
        self.top_idx = np.empty((n, cap), dtype=np.int32)
        self.count = np.zeros(n, dtype=np.int64)
        self.tau = np.empty(n, dtype=np.float64)
        self.g0 = np.empty(n, dtype=np.float64)  # exact gains until the first pick

        # The sample that sets each row's threshold: evenly spaced columns, about 4·K of them.
        step = max(1, n // (_SAMPLE_RATIO * self.K))
        cols = np.arange(0, n, step)
        XT_sample = np.take(self.XT, cols, axis=1)
        r = min(cols.size, (self.K * cols.size) // n + 1)
        tile = max(_TILE, (_TILE_ELEMENTS // self.block) // _TILE * _TILE)

        def first(start):
            rows = min(self.block, n - start)
            Xb = X[start:start + rows]
            thr = np.full(rows, -np.inf)
            if n > cap:
                _thresholds(Xb @ XT_sample, start, cols, *self.args, norms2, r, thr)
            acc = np.zeros(rows)
            bv = np.empty((rows, cap), dtype=np.float64)
            bi = np.empty((rows, cap), dtype=np.int32)
            cnt = np.zeros(rows, dtype=np.int64)
            for j0 in range(0, n, tile):
                w = min(tile, n - j0)
                Gt = np.matmul(Xb, self.XT[:, j0:j0 + w], out=pool._scratch((rows, w), X.dtype))
                _first_pass_tile(Gt, start, j0, cur, *self.args, norms2, self.K, thr, acc, bv, bi, cnt)
            _first_pass_finish(start, thr, acc, bv, bi, cnt, self.g0, self.top_val, self.top_idx, self.count,
                               self.tau)

        pool._map(first, list(range(0, n, self.block)))
        self.rev_ptr, self.rev_pos = _transpose_lists(self.top_idx, self.count)
        self.top_k_asked = top_k
        self._XT_full = self._zero_g0 = None  # set on an engine kept for forks (shared_lists)
        self.settled = cur >= self.tau
        self.g = np.zeros(n, dtype=np.float64)
        _settle_all(np.flatnonzero(self.settled), cur, self.top_val, self.top_idx, self.count, self.g)
        self.pairs_on_demand = 0
        self._copy_unsettled()

    def _copy_unsettled(self) -> None:
        self.u_rows = np.flatnonzero(~self.settled)
        self.u_norms = self.norms2[self.u_rows]
        if self.u_rows.size == self.n:
            self.u_XT = self.XT  # nothing settled yet: the first pass's copy serves
            return
        # The old copy, and the first pass's, go before the new one is made: one (m, n) copy at a time.
        self.u_XT = self.XT = None
        self.u_XT = np.ascontiguousarray(np.take(self.X, self.u_rows, axis=0).T)

    @property
    def unsettled(self) -> int:
        return int(self.n - np.count_nonzero(self.settled))

    def gains(self, cand: np.ndarray) -> np.ndarray:
        """Exact gains of ``cand``: settled rows from :attr:`g`, the others by GEMMs against them."""
        if self.g0 is not None:
            return self.g0[cand]
        out = self.g[cand]
        if self.u_rows.size:
            live = ~self.settled[self.u_rows]
            if np.count_nonzero(live) < _REBUILD * self.u_rows.size:
                self._copy_unsettled()
                live = np.ones(self.u_rows.size, dtype=bool)
            if self.u_rows.size:
                lo = np.where(live, self.cur[self.u_rows], np.inf)
                out = out + self._on_demand(cand, lo)
        return np.maximum(out, 0.0)  # rounding can leave a covered candidate at −1e-17

    def lower_bounds(self, cand: np.ndarray) -> tuple[np.ndarray, float]:
        """``(lb, slack)``: the gains of ``cand`` as :meth:`gains` computes them are at least ``lb − slack``.

        Why: a greedy *minimiser* needs the smallest gain of a sample, and on a pool like Fashion-MNIST pixels
        (similarities all high) its picks settle few rows, so every exact gain is a GEMM row against nearly the
        whole pool. ``lb`` is the settled rows' share :attr:`g` (the very numbers :meth:`gains` adds) plus, for
        the unsettled rows, the entries of the candidate's own list (:func:`_unsettled_list_share`): ``O(K)`` a
        candidate. A candidate that is already a near-duplicate of a pick has ``lb ≈ 0`` and is evaluated;
        one in an uncovered neighbourhood has a large ``lb`` and cannot be the minimum.

        ``slack`` is an a-priori bound on the rounding that separates the two computations (no estimate): each
        similarity is within ``ε_s`` of the exact one in both (a dot product of ``m`` terms in the GEMM's
        precision, then the kernel, :func:`worth.facility.similarity._sim`, whose slope is at most
        ``|scale| + 2γ``), so the list's and the GEMM's value of one pair differ by at most ``2ε_s``, over at
        most ``r`` unsettled rows; and each float64 sum of at most ``r + K`` non-negative terms below ``s_max``
        errs by at most ``(r + K)²·u·s_max``.
        """
        if self.g0 is not None:
            return self.g0[cand], 0.0  # before the first pick the gains are these very numbers
        out = np.empty(cand.size, dtype=np.float64)
        _unsettled_list_share(cand, self.cur, self.settled, self.top_val, self.top_idx, self.count, out)
        r = self.unsettled
        kind, scale, shift, gamma = self.args
        n2 = max(1.0, float(self.norms2.max()))
        u = float(np.finfo(self.X.dtype).eps) / 2
        m = self.X.shape[1]
        slope = abs(scale) + (2.0 * gamma if kind == _RBF else 0.0)
        eps_s = slope * ((m + 2) * u / (1 - (m + 2) * u) + 4 * u) * n2 + 4 * u  # one similarity, either route
        s_max = 1.0 if kind == _RBF else abs(scale) * n2 + abs(shift)
        terms = r + self.top_val.shape[1] + 2
        u64 = float(np.finfo(np.float64).eps) / 2
        slack = 2.0 * r * eps_s + 2.0 * (terms * terms + self.n) * u64 * s_max
        return self.g[cand] + out, 2.0 * slack

    def _on_demand(self, cand: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The unsettled rows' share of the gains of ``cand`` (``lo``: their running max, ``∞`` for rows settled
        since the copy): GEMMs in column tiles (each output reduced while in cache), candidates split over
        the cores."""
        r = self.u_rows.size
        self.pairs_on_demand += cand.size * r
        out = np.empty(cand.size, dtype=np.float64)
        parts = pool._threads() if cand.size * r * self.X.shape[1] >= _PAR_MIN_WORK else 1
        step = max(1, min(-(-cand.size // parts), 4 * self.block))
        # Column tiles of a fixed width (not tied to the split): the sums, hence the bits, do not depend on the
        # number of threads.
        tile = max(_TILE, (_TILE_ELEMENTS // (4 * self.block)) // _TILE * _TILE)

        if parts > 1 and step < _FEW_ROWS:
            return self._on_demand_by_columns(cand, lo, tile, parts)

        def part(a):
            c = cand[a:a + step]
            Xc = self.X[c]
            res = np.zeros(c.size)
            for q0 in range(0, r, tile):
                w = min(tile, r - q0)
                Gc = np.matmul(Xc, self.u_XT[:, q0:q0 + w], out=pool._scratch((c.size, w), self.X.dtype))
                _unsettled_block(Gc, self.norms2[c], self.u_norms[q0:q0 + w], lo[q0:q0 + w], *self.args, res)
            out[a:a + c.size] = res

        pool._map(part, list(range(0, cand.size, step)))
        return out

    def _on_demand_by_columns(self, cand: np.ndarray, lo: np.ndarray, tile: int, parts: int) -> np.ndarray:
        """:meth:`_on_demand` for a few candidates: the column tiles split over the cores instead of the
        candidates.

        Why: a GEMM of a few rows is bound by reading the unsettled rows (357 MB at 57,000 × 784 in float64),
        and split by candidates every thread reads all of them. Split by columns each reads its share. The
        bits are those of the candidate split: each tile's clipped sums are kept apart and added in tile order,
        from zero, as :func:`_unsettled_block` accumulates them there.
        """
        r = self.u_rows.size
        starts = list(range(0, r, tile))
        sums = np.zeros((len(starts), cand.size))
        Xc = self.X[cand]
        cn = self.norms2[cand]
        per = -(-len(starts) // parts)

        def part(first):
            for ti in range(first, min(first + per, len(starts))):
                q0 = starts[ti]
                w = min(tile, r - q0)
                Gc = np.matmul(Xc, self.u_XT[:, q0:q0 + w], out=pool._scratch((cand.size, w), self.X.dtype))
                _unsettled_block(Gc, cn, self.u_norms[q0:q0 + w], lo[q0:q0 + w], *self.args, sums[ti])

        pool._map(part, list(range(0, len(starts), per)))
        out = np.zeros(cand.size)
        for ti in range(len(starts)):
            out += sums[ti]
        return out

    def add(self, p: int) -> None:
        """Commit pick ``p`` (updates ``cur`` in place)."""
        self.g0 = None
        _pick(self.X, p, *self.args, self.norms2, self.cur, self.settled, self.tau, self.top_val, self.top_idx,
              self.count, self.g, self.rev_ptr, self.rev_pos, self.u_rows)

    def fork(self, cur: np.ndarray) -> "SettledLists":
        """The engine of another state over the same rows: this one's lists (read-only, shared) under the running
        max ``cur`` (updated in place by the fork's :meth:`add`). The lists do not depend on ``cur``; the
        initial gains ``g0`` do, so they are shared only when this engine was built on an all-zero ``cur`` and
        ``cur`` is all zero too (otherwise the fork's first gains are its settled rows' plus the on-demand
        share, as after any pick)."""
        new = object.__new__(SettledLists)
        for name in ("X", "norms2", "args", "n", "K", "block", "top_val", "top_idx", "count", "tau", "rev_ptr",
                     "rev_pos"):
            setattr(new, name, getattr(self, name))
        new.XT = self._XT_full
        new._XT_full = self._XT_full
        new._zero_g0 = self._zero_g0
        new.cur = cur
        zero = not np.any(cur)
        new.g0 = self._zero_g0.copy() if zero and self._zero_g0 is not None else None
        new.settled = cur >= self.tau
        new.g = np.zeros(self.n, dtype=np.float64)
        _settle_all(np.flatnonzero(new.settled), cur, self.top_val, self.top_idx, self.count, new.g)
        new.pairs_on_demand = 0
        new._copy_unsettled()
        return new


_SHARED: list[SettledLists] = []  # the engine kept for forks, while share_first_pass() is open
_SHARING = [0]
_SHARED_LOCK = threading.RLock()


@contextlib.contextmanager
def share_first_pass():
    """Context in which facility-location states over the same rows share one first pass (:func:`shared_lists`).

    A study runs dozens of facility-location states over one pool — maximisers per regime and size, minimisers,
    mixture completions — and each would pay the ``n²·m`` pass over every pair that builds its lists. Inside
    this context (re-entrant) the first state builds them and keeps an engine; the others fork it. The kept
    engine (the rows, their transpose and the lists) is let go when the outermost context exits.
    """
    with _SHARED_LOCK:
        _SHARING[0] += 1
    try:
        yield
    finally:
        with _SHARED_LOCK:
            _SHARING[0] -= 1
            if _SHARING[0] == 0:
                _SHARED.clear()


def shared_lists(X, norms2, cur, kernel_args, *, top_k, block) -> SettledLists:
    """The engine of a state with running max ``cur``: outside :func:`share_first_pass` a new one; inside it a
    fork of the engine kept for the same rows (equal content, kernel, list length and block), built on an
    all-zero running max the first time. A fork's gains are a fresh engine's (the lists are the same numbers,
    see :meth:`SettledLists.fork` for the initial gains)."""
    if not _SHARING[0]:
        return SettledLists(X, norms2, cur, kernel_args, top_k=top_k, block=block)
    block = max(1, min(block, _MAX_BLOCK))
    with _SHARED_LOCK:
        for tpl in _SHARED:
            if (tpl.args == tuple(kernel_args) and tpl.top_k_asked == top_k and tpl.block == block
                    and tpl.X.shape == X.shape and tpl.X.dtype == X.dtype
                    and (tpl.X is X or np.array_equal(tpl.X, X))):
                return tpl.fork(cur)
        tpl = SettledLists(X, norms2, np.zeros(X.shape[0], dtype=np.float64), kernel_args, top_k=top_k, block=block)
        tpl._XT_full, tpl._zero_g0 = tpl.XT, tpl.g0.copy()
        _SHARED[:] = [tpl]
        return tpl.fork(cur)
