"""Input checks: every bad input gets a ``ValueError`` that names the argument and says what to do."""

from __future__ import annotations

import numpy as np

from ._array import is_numpy, row_norms2, to_numpy


def _list_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", … ({rows.size} in all)" if rows.size > limit else "")


def prepare_rows(X, xp, *, normalize: bool, name: str = "X"):
    """Validate an embedding matrix and return it as float64 in its own namespace (rows L2-normalised).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, is empty, holds NaN/inf, or (with ``normalize=True``) has all-zero rows.
    """
    if not hasattr(X, "shape"):
        X = np.asarray(X)
        xp = np
    if len(X.shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_items, n_features); got shape {tuple(X.shape)}. "
            "Reshape a single item with X.reshape(1, -1) or a single feature with X.reshape(-1, 1)."
        )
    n, m = X.shape
    if n == 0 or m == 0:
        raise ValueError(f"{name} is empty (shape {tuple(X.shape)}); pass at least one item with one feature.")
    if is_numpy(xp) and X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers; got dtype {X.dtype}. Convert it with X.astype(float).")
    X64 = xp.astype(X, xp.float64) if X.dtype != xp.float64 else X
    finite = to_numpy(xp.all(xp.isfinite(X64), axis=1))
    if not finite.all():
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in rows {_list_rows(np.flatnonzero(~finite))}; "
            "drop or impute those rows before selecting."
        )
    if normalize:
        norms = xp.sqrt(row_norms2(X64, xp))
        zero = to_numpy(norms == 0)
        if zero.any():
            raise ValueError(
                f"{name} has all-zero rows {_list_rows(np.flatnonzero(zero))}, which cannot be L2-normalised; "
                "drop them, or pass normalize=False."
            )
        X64 = X64 / xp.reshape(norms, (-1, 1))
    return X64


def check_k(k, n: int, name: str = "k") -> int:
    """``k`` as an int in ``[1, n]``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name}={k!r} must be an integer number of items, e.g. {name}=100.")
    if k <= 0:
        raise ValueError(f"{name}={k} must be at least 1.")
    if k > n:
        raise ValueError(f"{name}={k} exceeds the number of items (n_samples={n}); pass {name} <= {n}.")
    return int(k)


def check_indices(indices, n: int, *, name: str = "indices", allow_repeats: bool = False) -> np.ndarray:
    """Indices as a host int64 array, each in ``[0, n)``."""
    idx = to_numpy(indices) if hasattr(indices, "shape") else np.asarray(list(indices))
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D sequence of integer row numbers; got {idx.dtype} of shape {idx.shape}.")
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise ValueError(f"{name} holds {idx[bad][:5].tolist()}, out of range for n={n} items; use 0 <= i < {n}.")
    if not allow_repeats and np.unique(idx).size != idx.size:
        raise ValueError(f"{name} holds duplicate entries; pass each row once.")
    return idx.astype(np.int64)
