"""Every subset scored by every objective, in batches: the study's scoring without its waste.

:func:`worth.appraisal.study.score_subset` (the reference) calls :func:`worth.score` once per objective and
subset: each call validates and L2-normalises the whole pool again, each spectral objective decomposes the
same Gram matrix again, and facility location runs one ``n × k × m`` GEMM per subset although the study's
subsets share most of their rows (mixtures keep a maximiser's prefix, greedy paths are prefixes of one
another). :func:`score_subsets` does the same arithmetic once:

- the pool is prepared once (:func:`worth.validation.prepare_rows`, as :func:`worth.score` does);
- spectral objectives: one ``eigvalsh`` per subset (:func:`worth.regime.subset_eigenvalues`), every
  spectral objective's value from those eigenvalues (``value_from_eigenvalues``: what ``worth.score`` calls);
- dense facility location: the pool in chunks of rows; per chunk one GEMM against the *union* of the batch's
  subsets' rows (each inner product computed once however many subsets hold the row), then per subset the
  running maximum over its columns. The similarity is the state's own (``FacilityState.transform``, in the
  objective's ``precision``: a float32 GEMM only where the objective asks for it, ≈1e-7 relative per
  similarity), the maxima are exact, and the sum over the pool is taken over the same float64 vector as the
  reference's, so a score can differ from the reference only where the GEMM of another shape rounds an inner
  product differently (≤ a few ulp per similarity; the equality test finds none on digits). Two subsets with
  the same rows score the same, bit for bit (the maximum does not depend on pick order);
- every other objective (the scaling law, kNN facility location, the coreset baselines): its exact
  ``value`` on the prepared pool, as :func:`worth.score` computes it.
"""

from __future__ import annotations

import numba
import numpy as np

import worth

from .._array import namespace
from ..constraints import check_labels
from ..facility.objective import FacilityLocation, FacilityState
from ..objectives import SpectralObjective
from ..regime import subset_eigenvalues, value
from ..validation import prepare_rows

_GEMM_ELEMENTS = 1 << 22  # inner products per GEMM chunk (32 MB in float64)
_CUR_BYTES = 1 << 30  # running maxima kept at once (n float64 per subset): all of a study's subsets at n = 48,000


def score_subsets(X, subsets, objectives: dict, labels=None, *, normalize: bool = True) -> list[dict[str, float]]:
    """``[{objective: score}]``, one dict per subset of ``subsets`` (row-index arrays), in their order.

    The values equal :func:`worth.appraisal.study.score_subset`'s (``worth.score`` per objective): spectral
    ones exactly, facility location's up to the rounding of one inner product (see the module docstring).
    """
    xp = namespace(X)
    X64 = prepare_rows(X, xp, normalize=normalize)
    n = X64.shape[0]
    lab = None if labels is None else check_labels(labels, n)
    idx = [np.asarray(s, dtype=np.int64) for s in subsets]
    built = {name: worth.get_objective(name, **params) for name, params in objectives.items()}
    out: list[dict[str, float]] = [{} for _ in idx]
    spectral = {name: o for name, o in built.items() if isinstance(o, SpectralObjective)}
    if spectral:
        for row, S in zip(out, idx):
            eig = subset_eigenvalues(X64, S, xp)
            for name, obj in spectral.items():
                row[name] = float(obj.value_from_eigenvalues(eig, int(S.size), n, xp))
    for name, obj in built.items():
        if name in spectral:
            continue
        if isinstance(obj, FacilityLocation) and obj.params["neighbors"] is None:
            for row, v in zip(out, facility_scores(X64, idx, obj, xp)):
                row[name] = v
        else:
            for row, S in zip(out, idx):
                row[name] = float(value(obj, X64, S, xp, pool=n, labels=lab))
    return [{name: row[name] for name in objectives} for row in out]


@numba.njit(cache=True, nogil=True)
def _column_maxima(Sim, flat, starts, which, out, r0):
    """``out[which[j], r0 + r] = max_{c ∈ S_j} Sim[r, c]`` for every subset ``j`` (its columns
    ``flat[starts[j]:starts[j + 1]]``, none empty) and row ``r`` of the chunk: row by row, so the row stays in
    cache while every subset reads its columns (gathering ``Sim[:, c]`` per subset copied the chunk once per
    subset). The maxima are exact: a maximum does not depend on the order it is taken in."""
    for r in range(Sim.shape[0]):
        row = Sim[r]
        for j in range(starts.size - 1):
            a, b = starts[j], starts[j + 1]
            m = row[flat[a]]
            for t in range(a + 1, b):
                v = row[flat[t]]
                if v > m:
                    m = v
            out[which[j], r0 + r] = m


def facility_scores(X64, subsets: list[np.ndarray], obj: FacilityLocation, xp) -> list[float]:
    """Dense facility location of every subset, by chunked GEMMs against the union of their rows."""
    state = FacilityState(X64, obj, xp)  # the prepared rows in the objective's precision, norms, similarity
    sx, n = state.xp, state.n
    values: list[float] = []
    per_batch = max(1, _CUR_BYTES // (8 * n))  # the pool's Gram against the union is computed once per batch
    for b0 in range(0, len(subsets), per_batch):
        batch = subsets[b0:b0 + per_batch]
        union, inverse = np.unique(np.concatenate(batch) if batch else np.zeros(0, np.int64), return_inverse=True)
        cols, start = [], 0
        for S in batch:  # each subset's columns in the union
            cols.append(inverse[start:start + S.size])
            start += S.size
        cur = np.zeros((len(batch), n), dtype=np.float64) if state.host else [None] * len(batch)
        XU = state._take(state.X, union)
        NU = state._take(state.norms2, union)
        step = max(1, _GEMM_ELEMENTS // max(1, union.size))
        which = np.asarray([j for j, c in enumerate(cols) if c.size], dtype=np.int64)
        flat = np.concatenate([cols[j] for j in which]).astype(np.int64) if which.size else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum([cols[j].size for j in which])]).astype(np.int64)
        for r0 in range(0, n, step):
            rows = np.arange(r0, min(n, r0 + step))
            G = state._take(state.X, rows) @ XU.T  # (rows, |union|): every inner product once
            Sim = state.transform(G, state._take(state.norms2, rows), NU)
            if state.host:
                _column_maxima(np.ascontiguousarray(Sim), flat, starts, which, cur, r0)
                continue
            for j, c in enumerate(cols):
                if c.size:
                    m = sx.max(sx.take(Sim, sx.asarray(c), axis=1), axis=1)
                    cur[j] = m if cur[j] is None else sx.concat([cur[j], m])
        for j, S in enumerate(batch):
            if S.size == 0:
                values.append(0.0)
            elif state.host:
                values.append(float(np.sum(np.maximum(cur[j], 0.0))))
            else:
                v = sx.maximum(cur[j], sx.zeros_like(cur[j]))
                values.append(float(sx.sum(v)))
    return values
