"""Facility location ``f(S) = Σ_{i∈V} max_{j∈S} s(i, j)``, without an n×n similarity matrix.

Facility location rewards a subset for *covering* the pool: every ground item ``i`` counts the similarity of
its closest selected item. It is monotone and submodular for ``s ≥ 0`` (a sum of maxima of non-negative
numbers), so lazy greedy is exact on it, and it was the best predictor of held-out accuracy in the reference
study (DESIGN.md §1.1).

Why no similarity matrix: peers (apricot, submodlib) materialise the n×n matrix, 3.2 GB in float64 at
n = 20,000 and 80 GB at n = 100,000. Here the state is one float per ground item, the running maximum
``cur_i = max_{j∈S} s(i, j)``, and a gain is

``f(S + j) − f(S) = Σ_i max(0, s(i, j) − cur_i)``,

so a batch of candidates costs one GEMM of the candidates' rows against the pool, in row blocks
(``block_size`` candidates at a time, memory ``block_size × n``), reduced at once into the gains. A pick
updates ``cur`` with one matrix–vector product.

Lazy greedy re-evaluates a few candidates per step, and a full GEMM row for each would cost far more than
the first pass. But once ``s(i, j) ≤ cur_i`` the term of ``i`` stays 0 for ever (``cur`` only grows), so a
re-evaluated candidate keeps its *support* — the ground items it still improves, with their similarities —
and later gains are sums over that shrinking list, with no GEMM at all. Late in a run a support is about
``n/|S|`` items. Supports are kept only when small enough (at most ``n/4`` items each, ``2^23`` in all: ≤ 100 MB);
the others are recomputed by GEMM. The result is the same sum over the same terms.

Similarities (rows are L2-normalised by :func:`worth.select` unless ``normalize=False``):

``"cosine"`` (default)
    ``s = max(0, xᵀy)``.
``"shifted-cosine"``
    ``s = (1 + xᵀy)/2``, in ``[0, 1]`` for unit rows.
``"rbf"``
    ``s = exp(−γ‖x − y‖²)``.

In every case ``s`` is clamped at 0 (facility location needs ``s ≥ 0``; the running max starts at 0).

Sparse mode (``neighbors=K``): each ground item is covered only by its ``K`` nearest neighbours (found by
:class:`sklearn.neighbors.NearestNeighbors`), ``s_K(i, j) = s(i, j)`` if ``j ∈ N_K(i)`` else 0. Memory and
gains are ``O(nK)``; the graph costs one kNN search. With ``K = n`` it is the dense objective. It runs on
the host (NumPy) whatever the input namespace.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._array import is_numpy, to_numpy
from .objectives import Objective

_BLOCK_ELEMENTS = 1 << 22  # automatic block: ≈ 4M similarities (32 MB in float64) per GEMM block
_SUPPORT_BUDGET = 1 << 24  # similarities kept in candidate supports, in all (≤ 200 MB)
_SUPPORT_BATCH = 256  # batches up to this size (lazy refreshes) record supports; the first full pass does not


# -- compiled reductions (NumPy path) -------------------------------------------------------------------

def _affine(G, cur, scale, shift, out):
    """``out[b] = Σ_i max(0, scale·G[b, i] + shift − cur[i])`` (cosine: scale 1, shift 0)."""
    for b in numba.prange(G.shape[0]):
        acc = 0.0
        for i in range(G.shape[1]):
            d = scale * G[b, i] + shift - cur[i]
            acc += max(d, 0.0)
        out[b] = acc


_FAST = {"reassoc", "nsz", "arcp", "contract"}
# Two compilations of one kernel: threads pay off on the big blocks of a full pass; on the small batches of
# lazy refreshes a parallel region costs more than it saves (and stalls badly on a loaded machine).
_gains_affine_par = numba.njit(cache=True, error_model="numpy", parallel=True, fastmath=_FAST)(_affine)
_gains_affine_seq = numba.njit(cache=True, error_model="numpy", fastmath=_FAST)(_affine)
_PARALLEL_MIN = 1 << 20  # similarities per block from which the reduction runs threaded


def _gains_affine(G, cur, scale, shift, out):
    kernel = _gains_affine_par if G.size >= _PARALLEL_MIN else _gains_affine_seq
    kernel(G, cur, scale, shift, out)


@numba.njit(cache=True, error_model="numpy", parallel=True, fastmath={"reassoc", "nsz", "arcp", "contract"})
def _gains_rbf(G, cand_norms, ground_norms, gamma, cur, out):
    """``out[b] = Σ_i max(0, exp(−γ·max(0, ‖x_b‖² + ‖x_i‖² − 2G[b, i])) − cur[i])``."""
    for b in numba.prange(G.shape[0]):
        acc = 0.0
        nb = cand_norms[b]
        for i in range(G.shape[1]):
            d2 = max(nb + ground_norms[i] - 2.0 * G[b, i], 0.0)
            acc += max(math.exp(-gamma * d2) - cur[i], 0.0)
        out[b] = acc


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
    block_size : int or None
        Candidates per GEMM block (``None``: about 4M similarities per block). Does not change the result.
    precision : {"float64", "float32"}
        dtype of the similarity GEMM. Gains and the running maximum are always accumulated in float64;
        float32 halves the GEMM time and memory at ≈1e-7 relative error per similarity (near-ties may then
        be broken differently than in float64).
    """

    name = "facility-location"

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


class FacilityState:
    """Greedy state of facility location over the rows of ``X`` (ground set = candidates = every row).

    Parameters
    ----------
    X : array, shape (n, m)
        Prepared float64 rows in namespace ``xp``.
    objective : FacilityLocation
    xp : namespace
    """

    def __init__(self, X, objective: FacilityLocation, xp) -> None:
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
            Xh = np.asarray(to_numpy(X), dtype=np.float64)
            self.X = np.ascontiguousarray(Xh, dtype=np.float32 if dtype_name == "float32" else np.float64)
            self.norms2 = np.einsum("ij,ij->i", Xh, Xh)
        else:
            dt = xp.float32 if dtype_name == "float32" else xp.float64
            self.X = xp.astype(X, dt)
            self.norms2 = xp.sum(X * X, axis=1)
        self.block = p["block_size"] or max(1, min(self.n, _BLOCK_ELEMENTS // self.n))
        self.cur = self.xp.zeros((self.n,), dtype=self.xp.float64)
        self.graph = _knn_graph(Xh, min(p["neighbors"], self.n), self) if self.sparse else None
        self.supports: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.support_entries = 0
        self.support_cap = self.n
        self.lazy_batch = 32

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
        x = self._take(self.X, np.asarray([index]))
        G = self.X @ xp.reshape(x, (-1, 1))  # (n, 1)
        S = self.transform(G, self.norms2, self._take(self.norms2, np.asarray([index])))
        return xp.reshape(S, (-1,))

    # -- GainModel ---------------------------------------------------------------------------------
    @property
    def value(self) -> float:
        """``f(S) = Σ_i cur_i``."""
        return float(to_numpy(self.xp.sum(self.cur)))

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """``Σ_i max(0, s(i, j) − cur_i)`` for each candidate ``j`` (host int array → host float64)."""
        cand = np.asarray(candidates, dtype=np.int64)
        out = np.empty(cand.size, dtype=np.float64)
        if self.sparse:
            indptr, indices, data = self.graph
            _gains_sparse(indptr, indices, data, self.cur, cand, out)
            return out
        todo = np.arange(cand.size)
        if self.supports:
            cached = np.fromiter((int(j) in self.supports for j in cand), dtype=bool, count=cand.size)
            for t in np.flatnonzero(cached):
                out[t] = self._support_gain(int(cand[t]))
            todo = np.flatnonzero(~cached)
        record = self.host and self.size > 0 and cand.size <= _SUPPORT_BATCH
        for start in range(0, todo.size, self.block):
            pos = todo[start:start + self.block]
            out[pos] = self._block_gains(cand[pos], record)
        return out

    def _support_gain(self, j: int) -> float:
        """Gain of ``j`` from its support, which is shrunk to the items it still improves."""
        idx, vals = self.supports[j]
        d = vals - self.cur[idx]
        keep = d > 0
        if not keep.all():
            self.support_entries -= int(idx.size - np.count_nonzero(keep))
            self.supports[j] = (idx[keep], vals[keep])
        return float(np.sum(d[keep]))

    def _record_supports(self, blk: np.ndarray, G: np.ndarray) -> None:
        """Keep the supports of the rows of ``G`` that are small enough (host path)."""
        S = self.transform(G, self.norms2[blk], self.norms2) if self.similarity == "rbf" else (
            G if self.similarity == "cosine" else 0.5 * G + 0.5)
        above = S > self.cur[None, :]
        counts = np.count_nonzero(above, axis=1)
        for b in np.flatnonzero(counts <= self.support_cap):
            if self.support_entries + counts[b] > _SUPPORT_BUDGET:
                break
            idx = np.flatnonzero(above[b]).astype(np.int32)
            self.supports[int(blk[b])] = (idx, np.asarray(S[b, idx], dtype=np.float64))
            self.support_entries += int(counts[b])

    def _block_gains(self, blk: np.ndarray, record: bool = False) -> np.ndarray:
        xp = self.xp
        G = self._take(self.X, blk) @ self.X.T  # (B, n): one GEMM
        if self.host:
            if record:
                self._record_supports(blk, G)
            out = np.empty(blk.size, dtype=np.float64)
            if self.similarity == "rbf":
                _gains_rbf(G, self.norms2[blk], self.norms2, self.gamma, self.cur, out)
            else:
                scale, shift = (1.0, 0.0) if self.similarity == "cosine" else (0.5, 0.5)
                _gains_affine(G, self.cur, scale, shift, out)
            return out
        S = self.transform(G, self._take(self.norms2, blk), self.norms2)
        D = S - xp.reshape(self.cur, (1, -1))
        return to_numpy(xp.sum(xp.maximum(D, xp.zeros_like(D)), axis=1))

    def add(self, index: int) -> None:
        """Commit ``index``: ``cur_i ← max(cur_i, s(i, index))``."""
        index = int(index)
        if self.sparse:
            indptr, indices, data = self.graph
            lo, hi = indptr[index], indptr[index + 1]
            rows = indices[lo:hi]
            self.cur[rows] = np.maximum(self.cur[rows], data[lo:hi])
        else:
            self.cur = self.xp.maximum(self.cur, self.similarity_to(index))
            dropped = self.supports.pop(index, None)
            if dropped is not None:
                self.support_entries -= int(dropped[0].size)
        self.size += 1

    def start_from(self, indices) -> None:
        """Set the state to the set ``indices``: the running maximum over them, computed in blocks."""
        idx = np.asarray(indices, dtype=np.int64)
        self.cur = self.xp.zeros((self.n,), dtype=self.xp.float64)
        self.size = 0
        self.supports.clear()
        self.support_entries = 0
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


def _knn_graph(X: np.ndarray, K: int, state: FacilityState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate-major CSR of the kNN similarities: row ``j`` lists ``(i, s(i, j))`` for ``j ∈ N_K(i)``.

    Neighbours come from :class:`sklearn.neighbors.NearestNeighbors` (Euclidean on the rows: the same order
    as cosine similarity for unit rows, and the RBF order always; cosine distance for unnormalised rows).
    The similarities of the kept pairs are recomputed from the rows by the same formula as the dense mode,
    so ``K = n`` gives the dense objective.
    """
    import sklearn
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    unit = np.allclose(state.norms2, 1.0, rtol=0, atol=1e-10)
    metric = "euclidean" if unit or state.similarity == "rbf" else "cosine"
    with sklearn.config_context(working_memory=64):  # MB per distance chunk: keeps the peak bounded
        nbr = NearestNeighbors(n_neighbors=K, metric=metric).fit(X).kneighbors(X, return_distance=False)
    Xc = state.X
    sims = np.empty(nbr.shape, dtype=np.float64)
    chunk = max(1, _BLOCK_ELEMENTS // max(1, K * X.shape[1]))
    for a in range(0, n, chunk):
        rows = nbr[a:a + chunk]
        G = np.einsum("cm,ckm->ck", Xc[a:a + chunk], Xc[rows], optimize=False)
        if state.similarity == "rbf":
            d2 = state.norms2[a:a + chunk, None] + state.norms2[rows] - 2.0 * G
            sims[a:a + chunk] = np.exp(-state.gamma * np.maximum(d2, 0.0))
        else:
            S = G.astype(np.float64) if state.similarity == "cosine" else 0.5 * G.astype(np.float64) + 0.5
            sims[a:a + chunk] = np.maximum(S, 0.0)
    ground = np.repeat(np.arange(n, dtype=np.int64), K)
    csr = sparse.csr_matrix((sims.ravel(), (nbr.ravel(), ground)), shape=(n, n))
    csr.sort_indices()
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data.astype(np.float64)
