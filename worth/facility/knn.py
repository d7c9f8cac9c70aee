"""The kNN graph of facility location's sparse mode (``neighbors=K``), candidate-major."""

from __future__ import annotations

import numpy as np

from .similarity import BLOCK_ELEMENTS


#: Approximate backends of :func:`neighbours` (``ann=``); ``None`` is the exact search.
ANN_BACKENDS = ("faiss-hnsw",)


def neighbours(X: np.ndarray, K: int, metric: str = "euclidean", ann: str | None = None) -> np.ndarray:
    """The ``K`` nearest rows of every row of ``X`` (itself included), shape ``(n, K)``; -1 where none was found.

    ``ann=None``: exact, :class:`sklearn.neighbors.NearestNeighbors` (brute force: ``n²m`` work, which is what
    bounds the sparse mode at ImageNet scale). ``ann="faiss-hnsw"``: faiss's HNSW graph index
    (``IndexHNSWFlat``, 32 links per node, ``efConstruction`` 40, ``efSearch`` max(2K, 64)), float32: about
    ``n log n`` distance evaluations to build and to query, approximate (a row may miss some of its true
    neighbours; measure the recall on a sample). An inverted-file index was tried first: its k-means training
    and the probed lists grow as ``n^1.5`` and did not fit this 2-core box at n = 100,000.
    ``metric="cosine"`` searches the normalised rows.
    """
    if ann is None:
        import sklearn
        from sklearn.neighbors import NearestNeighbors

        with sklearn.config_context(working_memory=64):  # MB per distance chunk: keeps the peak bounded
            return NearestNeighbors(n_neighbors=K, metric=metric).fit(X).kneighbors(X, return_distance=False)
    if ann != "faiss-hnsw":
        raise ValueError(f"ann={ann!r}: choose None (exact) or one of {ANN_BACKENDS}")
    try:
        import faiss
    except ImportError:
        raise ImportError("ann='faiss-hnsw' needs faiss: pip install faiss-cpu (or pass ann=None for the exact "
                          "search)") from None
    Y = np.ascontiguousarray(X, dtype=np.float32)
    if metric == "cosine":
        Y /= np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    index = faiss.IndexHNSWFlat(Y.shape[1], 32)
    index.hnsw.efConstruction = 40
    index.add(Y)
    index.hnsw.efSearch = max(2 * K, 64)
    return index.search(Y, K)[1].astype(np.int64)


def knn_graph(X: np.ndarray, K: int, state, ann: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate-major CSR of the kNN similarities: row ``j`` lists ``(i, s(i, j))`` for ``j ∈ N_K(i)``.

    Neighbours come from :func:`neighbours` (Euclidean on the rows: the same order as cosine similarity for
    unit rows, and the RBF order always; cosine distance for unnormalised rows), exact or by the approximate
    backend ``ann``. The similarities of the kept pairs are recomputed from the rows by the same formula as the
    dense mode, so ``K = n`` (exact) gives the dense objective.
    """
    from scipy import sparse

    n = X.shape[0]
    unit = np.allclose(state.norms2, 1.0, rtol=0, atol=1e-10)
    metric = "euclidean" if unit or state.similarity == "rbf" else "cosine"
    nbr = neighbours(X, K, metric, ann)
    found = nbr >= 0
    nbr = np.where(found, nbr, np.arange(n)[:, None])  # placeholders, dropped below
    Xc = state.X
    sims = np.empty(nbr.shape, dtype=np.float64)
    chunk = max(1, BLOCK_ELEMENTS // max(1, K * X.shape[1]))
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
    keep = found.ravel()
    csr = sparse.csr_matrix((sims.ravel()[keep], (nbr.ravel()[keep], ground[keep])), shape=(n, n))
    csr.sort_indices()
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data.astype(np.float64)
