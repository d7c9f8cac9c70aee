"""The kNN graph of facility location's sparse mode (``neighbors=K``), candidate-major."""

from __future__ import annotations

import numpy as np

from .similarity import BLOCK_ELEMENTS


def knn_graph(X: np.ndarray, K: int, state) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    csr = sparse.csr_matrix((sims.ravel(), (nbr.ravel(), ground)), shape=(n, n))
    csr.sort_indices()
    return csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data.astype(np.float64)
