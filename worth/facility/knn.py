"""The kNN graph of facility location's sparse mode (``neighbors=K``), candidate-major; its recall against the exact.

At ImageNet scale (n = 1.28 M, m = 512, K = 50) what bounds the sparse mode is the neighbour search and the
arrays around it, so everything here works on float32 rows as given (no float64 copy of the pool), in chunks:

* :func:`neighbours` — exact (scikit-learn, brute force, ``n²m``) or faiss's HNSW graph index (``n log n``):
  rows added and searched in chunks of :data:`CHUNK_ROWS`, on every core (:func:`faiss_threads`);
* :func:`knn_graph` — the similarities of the kept pairs recomputed in float64 from the rows, chunk by chunk,
  and the candidate-major CSR built by one stable sort (no COO → CSR copies);
* :func:`knn_recall` — recall@K of a graph on a sample of rows against brute force (what the bench reports).

Memory of the HNSW route at n = 1.28 M, m = 512, K = 50, M = 32: the caller's float32 rows (2.6 GB), faiss's
own copy of them (2.6 GB) and its links (≈ 0.35 GB), the ``n × K`` neighbour table (0.5 GB); then the graph
(indices int64 and data float64, 0.5 GB each, plus the sort's permutation).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .similarity import BLOCK_ELEMENTS

#: Approximate backends of :func:`neighbours` (``ann=``); ``None`` is the exact search.
ANN_BACKENDS = ("faiss-hnsw",)

#: Rows per faiss ``add``/``search`` call and per float32 conversion: bounds the temporaries beside the index.
CHUNK_ROWS = 65_536

#: HNSW parameters (faiss ``IndexHNSWFlat``): links per node ``M``, ``efConstruction``, and ``efSearch`` as a
#: multiple of K (at least ``ef_search_min``). Kept from the earlier measurement (recall@50 0.977 on a 10,000-row
#: sample of bench/scale.py's mixture, efSearch 100) and checked at n = 20,000 (recall@50 on 1,000 rows:
#: M 16 / efSearch 100: 0.868; M 32 / efSearch 100: 0.946; M 32 / efSearch 50: 0.879; efConstruction 40
#: throughout); the sweep at n = 100,000 that should confirm them
#: (``python bench/scale.py --n 100000 --store S --hnsw-sweep``) did not finish on the loaded box: run it quiet.
HNSW = {"M": 32, "ef_construction": 40, "ef_search_per_k": 2, "ef_search_min": 64}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def faiss_threads(threads: int | None = None):
    """faiss's OpenMP threads set to ``threads`` (default: every core this process may use) and restored after.

    The build and search are the whole cost of the kNN graph and parallelise well, so they use all cores even
    inside a one-thread Dask task (where BLAS is pinned to the worker's share; the other worker of the default
    two-worker runner idles while this single job runs).
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads or _cores()))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _float32_rows(X: np.ndarray, normalise: bool) -> np.ndarray:
    """``X`` as C-contiguous float32 (itself when it already is and needs no normalising), chunk by chunk."""
    if X.dtype == np.float32 and X.flags.c_contiguous and not normalise:
        return X
    Y = np.empty(X.shape, dtype=np.float32)
    for a in range(0, X.shape[0], CHUNK_ROWS):
        B = np.asarray(X[a:a + CHUNK_ROWS], dtype=np.float64)
        if normalise:
            B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        Y[a:a + CHUNK_ROWS] = B
    return Y


def _hnsw(X: np.ndarray, K: int, metric: str, threads: int | None, params: dict | None) -> np.ndarray:
    try:
        import faiss
    except ImportError:
        raise ImportError("ann='faiss-hnsw' needs faiss: pip install faiss-cpu (or pass ann=None for the exact "
                          "search)") from None
    p = {**HNSW, **(params or {})}
    Y = _float32_rows(X, metric == "cosine")
    n = Y.shape[0]
    out = np.empty((n, K), dtype=np.int64)
    with faiss_threads(threads):
        index = faiss.IndexHNSWFlat(Y.shape[1], int(p["M"]))
        index.hnsw.efConstruction = int(p["ef_construction"])
        for a in range(0, n, CHUNK_ROWS):
            index.add(Y[a:a + CHUNK_ROWS])
        index.hnsw.efSearch = max(int(p["ef_search_per_k"]) * K, int(p["ef_search_min"]))
        for a in range(0, n, CHUNK_ROWS):
            out[a:a + CHUNK_ROWS] = index.search(Y[a:a + CHUNK_ROWS], K)[1]
        del index
    return out


def neighbours(X: np.ndarray, K: int, metric: str = "euclidean", ann: str | None = None, *,
               threads: int | None = None, hnsw: dict | None = None) -> np.ndarray:
    """The ``K`` nearest rows of every row of ``X`` (itself included), shape ``(n, K)``; -1 where none was found.

    ``ann=None``: exact, :class:`sklearn.neighbors.NearestNeighbors` (brute force: ``n²m`` work, which is what
    bounds the sparse mode at ImageNet scale). ``ann="faiss-hnsw"``: faiss's HNSW graph index
    (``IndexHNSWFlat`` with the parameters of :data:`HNSW`, overridable by ``hnsw=``), on float32 rows (``X``
    itself when it is float32: no copy), added and searched in chunks on ``threads`` threads (default every
    core): about ``n log n`` distance evaluations to build and to query, approximate (a row may miss some of
    its true neighbours: :func:`knn_recall`). An inverted-file index was tried first: its k-means training and
    the probed lists grow as ``n^1.5`` and did not fit this 2-core box at n = 100,000.
    ``metric="cosine"`` searches the normalised rows.
    """
    if ann is None:
        import sklearn
        from sklearn.neighbors import NearestNeighbors

        with sklearn.config_context(working_memory=64):  # MB per distance chunk: keeps the peak bounded
            return NearestNeighbors(n_neighbors=K, metric=metric).fit(X).kneighbors(X, return_distance=False)
    if ann != "faiss-hnsw":
        raise ValueError(f"ann={ann!r}: choose None (exact) or one of {ANN_BACKENDS}")
    return _hnsw(X, K, metric, threads, hnsw)


def exact_neighbours_of(X: np.ndarray, queries: np.ndarray, K: int, metric: str = "euclidean",
                        chunk: int = 16_384) -> np.ndarray:
    """The exact ``K`` nearest rows of the rows ``queries`` of ``X`` (brute force in float64, the pool in chunks),
    shape ``(len(queries), K)``, nearest first: the reference :func:`knn_recall` compares with."""
    Q = np.asarray(X[queries], dtype=np.float64)
    if metric == "cosine":
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    best_d = np.full((Q.shape[0], 0), np.inf)
    best_i = np.zeros((Q.shape[0], 0), dtype=np.int64)
    for a in range(0, X.shape[0], chunk):
        B = np.asarray(X[a:a + chunk], dtype=np.float64)
        if metric == "cosine":
            B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        d = np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * (Q @ B.T)  # ‖q − b‖² − ‖q‖²: the same order
        d = np.concatenate([best_d, d], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(a, a + B.shape[0]), (Q.shape[0], B.shape[0]))],
                           axis=1)
        keep = np.argsort(d, axis=1, kind="stable")[:, :K]
        best_d, best_i = np.take_along_axis(d, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def knn_recall(X: np.ndarray, graph: np.ndarray, K: int | None = None, *, sample: int = 2000, seed: int = 0,
               metric: str = "euclidean") -> dict:
    """Recall@K of the neighbour table ``graph`` (``n × K``, as :func:`neighbours` returns) on ``sample`` random
    rows: the mean fraction of each row's exact ``K`` nearest rows (:func:`exact_neighbours_of`) that the graph
    lists. Ties in the exact distances can make a correct graph read slightly below 1.

    Returns ``{"recall": mean, "min": worst row's, "sample": rows checked, "K": K}``.
    """
    n = X.shape[0]
    K = graph.shape[1] if K is None else int(K)
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(n, size=min(int(sample), n), replace=False))
    exact = exact_neighbours_of(X, q, K, metric)
    per_row = np.array([np.intersect1d(graph[r, :K], e).size / K for r, e in zip(q, exact)])
    return {"recall": float(per_row.mean()), "min": float(per_row.min()), "sample": int(q.size), "K": K}


def knn_graph(X: np.ndarray, K: int, state, ann: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate-major CSR of the kNN similarities: row ``j`` lists ``(i, s(i, j))`` for ``j ∈ N_K(i)``.

    Neighbours come from :func:`neighbours` (Euclidean on the rows: the same order as cosine similarity for
    unit rows, and the RBF order always; cosine distance for unnormalised rows), exact or by the approximate
    backend ``ann``. The similarities of the kept pairs are recomputed from the rows in float64 by the same
    formula as the dense mode, so ``K = n`` (exact) gives the dense objective. The CSR is the transpose of the
    ``n × K`` table by one stable sort of its entries by neighbour: within a candidate's list the ground items
    stay in increasing order, as a CSR's sorted indices must be.
    """
    from ..validation import unit_tolerance

    n, m = X.shape
    unit = np.abs(state.norms2 - 1.0).max(initial=0.0) <= max(1e-10, unit_tolerance(m, X.dtype))
    metric = "euclidean" if unit or state.similarity == "rbf" else "cosine"
    nbr = neighbours(X, K, metric, ann)
    found = nbr >= 0
    nbr = np.where(found, nbr, np.arange(n)[:, None])  # placeholders, dropped below
    Xc = state.X
    sims = np.empty(nbr.shape, dtype=np.float64)
    chunk = max(1, BLOCK_ELEMENTS // max(1, K * m))
    for a in range(0, n, chunk):
        rows = nbr[a:a + chunk]
        G = np.einsum("cm,ckm->ck", Xc[a:a + chunk].astype(np.float64, copy=False),
                      Xc[rows].astype(np.float64, copy=False), optimize=False)
        if state.similarity == "rbf":
            d2 = state.norms2[a:a + chunk, None] + state.norms2[rows] - 2.0 * G
            sims[a:a + chunk] = np.exp(-state.gamma * np.maximum(d2, 0.0))
        else:
            S = G if state.similarity == "cosine" else 0.5 * G + 0.5
            sims[a:a + chunk] = np.maximum(S, 0.0)
    flat = nbr.ravel()
    keep = found.ravel()
    if not keep.all():
        flat = np.where(keep, flat, n)  # missing pairs sort past every candidate and are cut off
    order = np.argsort(flat, kind="stable")
    total = int(keep.sum())
    order = order[:total]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat[order], minlength=n), out=indptr[1:])
    indices = order // K  # the ground item of each entry (entries are row-major: item i holds i*K .. i*K+K-1)
    data = sims.ravel()[order]
    return indptr, indices.astype(np.int64, copy=False), data
