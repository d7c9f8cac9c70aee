"""Facility location ``f(S) = Σ_{i∈V} max_{j∈S} s(i, j)``, without an n×n similarity matrix.

Facility location rewards a subset for *covering* the pool: every ground item ``i`` counts the similarity of
its closest selected item. It is monotone and submodular for ``s ≥ 0`` (a sum of maxima of non-negative
numbers), so lazy greedy is exact on it, and it was the best predictor of held-out accuracy in the reference
study.

Why no similarity matrix: peers (apricot, submodlib) materialise the n×n matrix, 3.2 GB in float64 at
n = 20,000 and 80 GB at n = 100,000. Here the state is one float per ground item, the running maximum
``cur_i = max_{j∈S} s(i, j)``, and a gain is

``g_j = f(S + j) − f(S) = Σ_i max(0, s(i, j) − cur_i)``.

Maintained gains (NumPy inputs, dense mode): :mod:`worth.facility.lists`. Evaluating a gain from scratch
costs a GEMM row (O(n·m)), and even lazy greedy evaluates several times n candidates over a run of
k = 1,000 picks, most of them in the first picks. The engine splits every gain by ground row:

1. One pass over all similarities (GEMM tiles on every core) keeps, for each row ``i``, every ``j`` with
   ``s_ij`` above a threshold ``τ_i`` set so that about ``K`` pass (default 256), sorted, and sums the
   initial gains.
2. A row is *settled* once ``cur_i ≥ τ_i``: its share of every gain is then read off its list and kept up
   to date in a vector ``g`` by walking the list when a pick raises ``cur_i``.
3. The other rows' share is computed on demand, for the queried candidates only, by a GEMM against those
   rows; nothing about them is maintained, so a row that moves many times early in a run costs nothing
   until it settles (the design before this one recomputed such rows against the whole pool, 2.5–3.5 n
   rows per run).

On a 20-cluster mixture (n = 20,000, m = 64, k = 1,000, float32) a run costs about one pass for the lists
and three passes' worth of on-demand pairs, nearly all in the first 20 picks. Every similarity is computed
from its inner product by one compiled function (:func:`_sim`): the lists hold the very numbers of the
direct computation, and the picks are those of the direct computation (sums are reassociated, far inside
the optimisers' tie tolerance). Memory: ``X`` (and its transpose), the lists (12 bytes per entry, at most
:data:`worth.facility.lists.LIST_BYTES`) and one GEMM tile per core. GEMMs run on one BLAS thread each,
on Python threads (see :func:`worth.facility.pool.one_blas_thread`).

Other namespaces (CuPy, torch, array-api-strict) evaluate gains directly: one GEMM of the candidates' rows
against the pool, in row blocks, reduced at once; a pick updates ``cur`` with one matrix–vector product.

Similarities (rows are L2-normalised by :func:`worth.select` unless ``normalize=False``):

``"cosine"`` (default)
    ``s = max(0, xᵀy)``.
``"shifted-cosine"``
    ``s = (1 + xᵀy)/2``, in ``[0, 1]`` for unit rows.
``"rbf"``
    ``s = exp(−γ‖x − y‖²)``.

In every case ``s`` is clamped at 0 (facility location needs ``s ≥ 0``; the running max starts at 0). All
three are symmetric, which step 2 relies on (the ``j`` that lose gain when ``cur_i`` grows are read off the
row of ``i``).

Sparse mode (``neighbors=K``): each ground item is covered only by its ``K`` nearest neighbours (found by
:class:`sklearn.neighbors.NearestNeighbors`, or approximately by faiss with ``ann="faiss-hnsw"``), ``s_K(i, j) = s(i, j)`` if ``j ∈ N_K(i)`` else 0. Memory and
gains are ``O(nK)``; the graph costs one kNN search. With ``K = n`` it is the dense objective. It runs on
the host (NumPy) whatever the input namespace.
"""

from __future__ import annotations

import numba
import numpy as np

from .._array import is_numpy, to_numpy
from ..objectives import Objective
from ..optimizers import State
from ..validation import check_count
from .knn import knn_graph
from .pool import one_blas_thread
from .similarity import _RBF, BLOCK_ELEMENTS, _column

_TOP_K = None  # list length aimed at per row; None: lists.LIST_K, within lists.LIST_BYTES
_LAZY_BATCH = 32  # stale bounds lazy greedy refreshes first per step (each costs a GEMM against unsettled rows)
_MAINTAINED = True  # False: NumPy evaluates gains directly as the other namespaces do (tests compare the two)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _gains_sparse(indptr, indices, data, cur, cand, out):
    """Gains over the candidate-major kNN graph: row ``j`` holds ``s(i, j)`` for the ``i`` that ``j`` covers."""
    for t in numba.prange(cand.shape[0]):
        j = cand[t]
        acc = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            d = data[p] - cur[indices[p]]
            if d > 0.0:
                acc += d
        out[t] = acc


# -- the objective ------------------------------------------------------------------------------------

class FacilityLocation(Objective):
    """Facility location over a similarity computed on the fly (see the module docstring).

    Parameters
    ----------
    similarity : {"cosine", "shifted-cosine", "rbf"}
    gamma : float
        RBF width (``rbf`` only).
    neighbors : int or None
        ``None``: dense (every pair, in blocks). ``K``: each item covered by its ``K`` nearest neighbours only.
    ann : {None, "faiss-hnsw"}
        How the sparse mode finds the neighbours: ``None`` exactly (scikit-learn, ``n²m`` work), or with faiss's
        approximate HNSW index (:func:`worth.facility.knn.neighbours`), for pools where the exact
        search is the bottleneck. The objective is then the one of the approximate graph.
    block_size : int or None
        Rows per GEMM block (``None``: about 4M similarities per block). Does not change the result.
    precision : {"float64", "float32"}
        dtype of the similarity GEMM. Gains and the running maximum are always accumulated in float64;
        float32 halves the GEMM time and memory at ≈1e-7 relative error per similarity (near-ties may then
        be broken differently than in float64).
    """

    name = "facility-location"
    float32_rows = True  # FacilityState computes norms and similarities of kept pairs in float64 itself
    target_keeps_submodularity = True  # I(S; Q) is facility location on min(s_ij, max_q s_iq): submodular

    @property
    def method(self) -> str:
        return "dense" if self.params["neighbors"] is None else "knn"

    def make_state(self, X, xp, *, labels=None) -> "FacilityState":
        return FacilityState(X, self, xp)

    def value(self, X, indices, xp, *, labels=None) -> float:
        """Exact ``f(S)`` (the sparsified one with ``neighbors``): one running-max pass over ``S``."""
        idx = np.asarray(indices, dtype=np.int64)
        state = FacilityState(X, self, xp)
        state.start_from(idx)
        return state.value


def _norms2_f64(X: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Squared row norms accumulated in float64, chunk by chunk (no float64 copy of float32 rows)."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for a in range(0, X.shape[0], chunk):
        B = X[a:a + chunk].astype(np.float64, copy=False)
        out[a:a + chunk] = np.einsum("ij,ij->i", B, B)
    return out


class FacilityState(State):
    """Greedy state of facility location over the rows of ``X`` (ground set = candidates = every row).

    Parameters
    ----------
    X : array, shape (n, m)
        Prepared float64 rows in namespace ``xp``.
    objective : FacilityLocation
    xp : namespace
    top_k : int, optional
        List length aimed at per ground item by the maintained gains (default: 256, or less if the lists
        would pass :data:`worth.facility.lists.LIST_BYTES`). Does not change the result, only how soon rows
        settle.

    Attributes
    ----------
    lists : worth.facility.lists.SettledLists or None
        The maintained gains (NumPy dense mode), built by the first :meth:`gains` call; its ``unsettled`` and
        ``pairs_on_demand`` are cost diagnostics.
    """

    def __init__(self, X, objective: FacilityLocation, xp, *, top_k: int | None = None) -> None:
        p = objective.params
        self.objective = objective
        self.similarity = p["similarity"]
        self.gamma = float(p["gamma"])
        self.n, self.m = X.shape
        self.size = 0
        self.sparse = p["neighbors"] is not None
        self.host = self.sparse or is_numpy(xp)
        self.xp = np if self.host else xp
        dtype_name = p["precision"]
        if self.host:
            Xh = to_numpy(X)
            if Xh.dtype not in (np.float32, np.float64):
                Xh = np.asarray(Xh, dtype=np.float64)
            # kNN mode uses the rows only to build the graph (pair similarities in float64 from them): they
            # stay as given, float32 included, with no copy; the dense GEMM runs in `precision`.
            self.X = Xh if self.sparse else \
                np.ascontiguousarray(Xh, dtype=np.float32 if dtype_name == "float32" else np.float64)
            self.norms2 = _norms2_f64(Xh)
        else:
            dt = xp.float32 if dtype_name == "float32" else xp.float64
            self.X = xp.astype(X, dt)
            self.norms2 = xp.sum(X * X, axis=1)
        self.block = p["block_size"] or max(1, min(self.n, BLOCK_ELEMENTS // self.n))
        self.cur = self.xp.zeros((self.n,), dtype=self.xp.float64)
        self.graph = knn_graph(Xh, min(p["neighbors"], self.n), self, p["ann"]) if self.sparse else None
        self.maintained = _MAINTAINED and self.host and not self.sparse
        if top_k is not None:
            check_count(top_k, "top_k", what=" list length", example=128)
        top_k = _TOP_K if top_k is None else top_k
        self.top_k = None if top_k is None else min(self.n, int(top_k))
        kind = _RBF if self.similarity == "rbf" else 0
        scale, shift = (0.5, 0.5) if self.similarity == "shifted-cosine" else (1.0, 0.0)
        self._kernel_args = (kind, scale, shift, self.gamma)
        self.lists = None  # the SettledLists engine, built by the first gains() call (maintained mode)
        # Settled rows' gains are look-ups; the others cost a GEMM row per candidate: moderate batches.
        self.lazy_batch = _LAZY_BATCH
        # The tie rule's floor: cosine similarities of raw rows (normalize=False) scale with ‖x‖²; the
        # shifted cosine and the RBF kernel are bounded by 1 whatever the rows.
        n2 = to_numpy(self.norms2)
        self.scale = float(n2.max()) if self.similarity == "cosine" and n2.size else 1.0

    # -- similarities ------------------------------------------------------------------------------
    def transform(self, G, rows_norms=None, cols_norms=None):
        """Similarities from the inner products ``G`` (rows × cols), clamped at 0 (namespace arrays)."""
        xp = self.xp
        G = xp.astype(G, xp.float64) if G.dtype != xp.float64 else G
        if self.similarity == "cosine":
            return xp.maximum(G, xp.zeros_like(G))
        if self.similarity == "shifted-cosine":
            S = 0.5 * G + 0.5
            return xp.maximum(S, xp.zeros_like(S))
        d2 = xp.reshape(rows_norms, (-1, 1)) + xp.reshape(cols_norms, (1, -1)) - 2.0 * G
        return xp.exp(-self.gamma * xp.maximum(d2, xp.zeros_like(d2)))

    def _take(self, arr, idx):
        if self.host:
            return arr[idx]
        return self.xp.take(arr, self.xp.asarray(idx), axis=0)

    def similarity_to(self, index: int):
        """``s(i, index)`` for every ground item ``i`` (dense: one matrix–vector product)."""
        xp = self.xp
        if self.host:
            out = np.empty(self.n, dtype=np.float64)
            _column(self.X, index, *self._kernel_args, self.norms2, out)
            return out
        x = self._take(self.X, np.asarray([index]))
        G = self.X @ xp.reshape(x, (-1, 1))  # (n, 1)
        S = self.transform(G, self.norms2, self._take(self.norms2, np.asarray([index])))
        return xp.reshape(S, (-1,))

    @property
    def info(self) -> dict:
        """Cost diagnostics of the maintained gains (empty on the direct and kNN paths): the list length aimed
        at, rows still unsettled, and candidate × unsettled-row pairs evaluated on demand (compare with the
        ``n²`` pairs of the first pass)."""
        if self.lists is None:
            return {}
        return {"list_length": int(self.lists.K), "unsettled_rows": self.lists.unsettled,
                "pairs_on_demand": int(self.lists.pairs_on_demand), "pairs_first_pass": int(self.n) ** 2}

    # -- GainModel ---------------------------------------------------------------------------------
    @property
    def value(self) -> float:
        """``f(S) = Σ_i cur_i``."""
        return float(to_numpy(self.xp.sum(self.cur)))

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """``Σ_i max(0, s(i, j) − cur_i)`` for each candidate ``j`` (host int array → host float64)."""
        cand = np.asarray(candidates, dtype=np.int64)
        if self.maintained:
            if self.lists is not None and (self.lists.g0 is not None or not self.lists.u_rows.size):
                return self.lists.gains(cand)  # look-ups only: no GEMM, no need to pin BLAS
            with one_blas_thread():
                if self.lists is None:
                    from .lists import shared_lists

                    self.lists = shared_lists(self.X, self.norms2, self.cur, self._kernel_args, top_k=self.top_k,
                                              block=self.block)
                return self.lists.gains(cand)
        out = np.empty(cand.size, dtype=np.float64)
        if self.sparse:
            indptr, indices, data = self.graph
            _gains_sparse(indptr, indices, data, self.cur, cand, out)
            return out
        for start in range(0, cand.size, self.block):
            out[start:start + self.block] = self._block_gains(cand[start:start + self.block])
        return out

    def gain_lower_bounds(self, candidates: np.ndarray) -> tuple[np.ndarray, float] | None:
        """``(lb, slack)`` with every gain :meth:`gains` would return for ``candidates`` at least ``lb − slack``
        (:meth:`worth.facility.lists.SettledLists.lower_bounds`: ``O(K)`` a candidate), or ``None`` where
        :meth:`gains` is itself a look-up (before the first pick, once every row is settled) or there are no
        lists (the direct and kNN routes). A greedy minimiser evaluates exactly only the candidates whose bound
        does not already put them above its smallest exact gain."""
        lists = self.lists
        if not self.maintained or lists is None or lists.g0 is not None or not lists.u_rows.size:
            return None
        return lists.lower_bounds(np.asarray(candidates, dtype=np.int64))

    def _block_gains(self, blk: np.ndarray) -> np.ndarray:
        """Gains of the candidates ``blk`` by one GEMM against the pool (namespaces other than NumPy)."""
        xp = self.xp
        G = self._take(self.X, blk) @ self.X.T  # (B, n): one GEMM
        S = self.transform(G, self._take(self.norms2, blk), self.norms2)
        D = S - xp.reshape(self.cur, (1, -1))
        return to_numpy(xp.sum(xp.maximum(D, xp.zeros_like(D)), axis=1))

    def add(self, index: int) -> None:
        """Commit ``index``: ``cur_i ← max(cur_i, s(i, index))`` (and the maintained gains with it)."""
        index = int(index)
        if self.sparse:
            indptr, indices, data = self.graph
            lo, hi = indptr[index], indptr[index + 1]
            rows = indices[lo:hi]
            self.cur[rows] = np.maximum(self.cur[rows], data[lo:hi])
        elif self.lists is not None:
            self.lists.add(index)  # updates self.cur in place
        else:
            self.cur = self.xp.maximum(self.cur, self.similarity_to(index))
        self.size += 1

    def start_from(self, indices) -> None:
        """Set the state to the set ``indices``: the running maximum over them, computed in blocks."""
        idx = np.asarray(indices, dtype=np.int64)
        self.cur = self.xp.zeros((self.n,), dtype=self.xp.float64)
        self.size = 0
        self.lists = None  # rebuilt under the new running maximum by the next gains() call
        if self.sparse:
            for i in idx:
                self.add(int(i))
            return
        xp = self.xp
        for start in range(0, idx.size, self.block):
            blk = idx[start:start + self.block]
            G = self.X @ self._take(self.X, blk).T  # (n, B)
            S = self.transform(G, self.norms2, self._take(self.norms2, blk))
            self.cur = xp.maximum(self.cur, xp.max(S, axis=1))
        self.size = int(idx.size)


