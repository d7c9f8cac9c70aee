"""Input checks: every bad input gets a ``ValueError`` that names the argument and says what to do."""

from __future__ import annotations

import numpy as np

from ._array import is_numpy, row_norms2, to_numpy


def _list_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", … ({rows.size} in all)" if rows.size > limit else "")


#: Elements per chunk of :func:`prepare_rows` / :func:`normalize_rows_inplace` (32 MB of float64 temporaries).
CHUNK_ELEMENTS = 1 << 22


def unit_tolerance(m: int, dtype) -> float:
    """How far from 1 a squared row norm may be for rows of ``m`` features normalised in ``dtype``.

    Each stored coordinate of a normalised row carries a relative rounding of at most ``eps(dtype)/2``, so
    ``|‖x‖² − 1| ≤ m · eps`` bounds what normalising in that precision can leave (6.1e-5 for float32 at
    m = 512; in practice ≈ 1e-6). Rows within it count as unit rows: normalising them again changes nothing
    beyond that rounding.
    """
    return float(m * np.finfo(dtype).eps)


def working_dtype(X, xp, float32_ok: bool):
    """The dtype the library computes in for rows ``X``: float32 for float16/float32 input when the objective's
    state keeps float32 rows (``float32_ok``), else float64 (integers, float64, and every other state)."""
    if float32_ok and str(getattr(X, "dtype", "")) in ("float16", "float32"):
        return xp.float32
    return xp.float64


def _row_chunks(n: int, m: int):
    step = max(1, CHUNK_ELEMENTS // max(1, m))
    for a in range(0, n, step):
        yield a, min(n, a + step)


def normalize_rows_inplace(X, xp=np) -> None:
    """L2-normalise the rows of the float ``X`` in place, chunk by chunk (norms accumulated in float64).

    For a caller that owns a freshly read pool (the select task): :func:`prepare_rows` then finds unit rows and
    uses ``X`` without a copy. All-zero and non-finite rows are left as they are (``prepare_rows`` names them).
    """
    n, m = X.shape
    for a, b in _row_chunks(n, m):
        block = X[a:b, :]
        n2 = row_norms2(xp.astype(block, xp.float64), xp)
        scale = xp.where((n2 > 0) & xp.isfinite(n2), 1.0 / xp.sqrt(xp.where(n2 > 0, n2, 1.0)), 1.0)
        X[a:b, :] = xp.astype(block * xp.reshape(xp.astype(scale, block.dtype), (-1, 1)), block.dtype)


def prepare_rows(X, xp, *, normalize: bool, name: str = "X", dtype=None):
    """Validate an embedding matrix and return it in ``dtype`` (default float64) in its own namespace, rows
    L2-normalised.

    The rows are checked and converted chunk by chunk into one output array allocated up front, so the peak is
    the input plus the result (never a float64 temporary of the whole pool beside them). With
    ``dtype=float32`` and float32 input that is already finite and (with ``normalize``) of unit rows within
    :func:`unit_tolerance`, ``X`` itself is returned: no copy at all. The norms are always computed in
    float64; a float32 result is the float64-normalised row rounded once to float32.

    Raises
    ------
    ValueError
        If ``X`` is a lazy (Dask) array, an ``np.matrix`` or a masked array, is not 2-D, is empty, holds
        NaN/inf, or (with ``normalize=True``) has all-zero rows.
    """
    check_in_memory(X, name)
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
    dtype = xp.float64 if dtype is None else dtype
    finite = np.ones(n, dtype=bool)
    norms2 = np.empty(n, dtype=np.float64)
    amax = np.empty(n, dtype=np.float64)
    for a, b in _row_chunks(n, m):
        block = xp.astype(X[a:b, :], xp.float64)
        finite[a:b] = to_numpy(xp.all(xp.isfinite(block), axis=1))
        norms2[a:b] = to_numpy(row_norms2(block, xp))
        amax[a:b] = to_numpy(xp.max(xp.abs(block), axis=1))
    if not finite.all():
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in rows {_list_rows(np.flatnonzero(~finite))}; "
            "drop or impute those rows before selecting."
        )
    if normalize:
        zero = amax == 0  # not norms2 == 0: ‖x‖² of rows near 1e-160 underflows although the row is not zero
        if zero.any():
            raise ValueError(
                f"{name} has all-zero rows {_list_rows(np.flatnonzero(zero))}, which cannot be L2-normalised; "
                "drop them, or pass normalize=False."
            )
    else:
        _check_norms(norms2, bool((amax > 0).any()), name)
    if X.dtype == dtype and (not normalize or (dtype != xp.float64 and
                                               np.abs(norms2 - 1.0).max() <= unit_tolerance(m, dtype))):
        return X
    out = xp.empty((n, m), dtype=dtype)  # CuPy: on the current device, where X is
    for a, b in _row_chunks(n, m):
        block = xp.astype(X[a:b, :], xp.float64)
        if normalize:
            # Divide by each row's largest entry first: ‖x‖² of rows near 1e±160 over- or underflows, and x/‖x‖
            # would then be 0 or NaN (issue 21); after it every squared norm lies in [1, m].
            block = block / xp.reshape(xp.asarray(amax[a:b]), (-1, 1))
            block = block / xp.reshape(xp.sqrt(row_norms2(block, xp)), (-1, 1))
        out[a:b, :] = block if dtype == xp.float64 else xp.astype(block, dtype)
    return out


NORM2_MIN = 1e-300
"""Smallest largest squared row norm the spectral arithmetic resolves: below it pole gaps and weights of the
secular equation reach float64's subnormal range (rows of norm ``1e-153`` gave wrong picks)."""

NORM2_MAX = 1e303
"""Largest sum of squared row norms (the largest trace of any ``C_S``): beyond it ``λ log λ`` and the
quadrature interval overflow float64 (rows of norm ``1e153`` did)."""


def check_magnitude(X64, xp, name: str = "X") -> None:
    """Refuse rows (``normalize=False``) whose squared norms float64 cannot carry through the eigenvalues.

    Inside ``[NORM2_MIN, NORM2_MAX]`` every tolerance of the core is relative to the data, so the picks of
    the objectives homogeneous in ``X`` (``power``, ``entropy`` on rows of equal norm, facility location's
    cosine) do not depend on a common factor of the rows; outside it the arithmetic itself fails, and the
    fix is to divide or multiply ``X`` by a constant.
    """
    n2 = to_numpy(row_norms2(X64, xp))
    _check_norms(n2, bool(to_numpy(xp.any(X64 != 0))), name)


def _check_norms(n2: np.ndarray, any_nonzero: bool, name: str) -> None:
    """:func:`check_magnitude` on the squared row norms ``n2`` (float64, computed chunk by chunk)."""
    if n2.size == 0:
        return
    top = float(np.max(n2))
    total = float(np.sum(n2))
    if not np.isfinite(total) or total > NORM2_MAX:
        worst = int(np.argmax(n2))
        raise ValueError(
            f"{name} is too large for float64 arithmetic with normalize=False: its squared row norms sum to "
            f"{total:.3g} (row {worst}: {n2[worst]:.3g}), above {NORM2_MAX:g}, where the eigenvalues' λ·log λ "
            f"overflows; divide {name} by a constant first (e.g. {name} / np.abs({name}).max()), which does not "
            "change the picks of scale-free objectives (power, facility-location), or pass normalize=True."
        )
    if 0 < top < NORM2_MIN or (top == 0 and any_nonzero):
        raise ValueError(
            f"{name} is too small for float64 arithmetic with normalize=False: its largest squared row norm is "
            f"{top:.3g}, below {NORM2_MIN:g}, where the eigenvalue arithmetic reaches subnormal numbers; "
            f"multiply {name} by a constant first (e.g. {name} / np.abs({name}).max()), which does not change "
            "the picks of scale-free objectives (power, facility-location), or pass normalize=True."
        )


def check_in_memory(X, name: str = "X") -> None:
    """Refuse array types whose semantics the core would silently get wrong, before any work.

    Dask arrays: the spectral core needs ``eigh``, which ``dask.array.linalg`` lacks, and a gain pass per pick
    would recompute the task graph; detected by the type's module, so the library never imports Dask.
    ``np.matrix``: ``*`` and reductions keep two dimensions. Masked arrays: the mask would be ignored.
    """
    kind = type(X)
    if kind.__module__.split(".")[0] == "dask":
        raise ValueError(
            f"{name} is a Dask array ({kind.__name__}); worth selects in memory: call {name}.compute() first, "
            "or run the select flow, which reads a store in chunks."
        )
    if isinstance(X, np.matrix):
        raise ValueError(f"{name} is an np.matrix; pass a plain array: np.asarray({name}).")
    if isinstance(X, np.ma.MaskedArray):
        raise ValueError(
            f"{name} is a masked array, and the mask would be ignored; drop the masked rows "
            f"({name}[~np.ma.getmaskarray({name}).any(axis=1)].data) or fill them ({name}.filled(...))."
        )


UNIT_NORM_ATOL = 1e-3
"""How far from 1 a squared row norm may be where the objective needs a unit-diagonal kernel (float16 rows
normalised elsewhere are within ~1e-3; raw encoder outputs are off by far more)."""


def check_unit_norms(X64, xp, objective: str, name: str = "X") -> None:
    """Refuse rows far from unit norm for an objective defined on a kernel with unit diagonal.

    The Vendi Score is the exponential of the entropy of ``ρ = K/|S|``, a density matrix only when
    ``k(x, x) = ‖x‖² = 1``; on raw rows it is a number of no meaning (on rows of norm 10 every value
    underflows to 0 and greedy picks rows 0, 1, 2, …).
    """
    n2 = to_numpy(row_norms2(X64, xp))
    off = np.abs(n2 - 1.0)
    if off.size and off.max() > UNIT_NORM_ATOL:
        worst = int(np.argmax(off))
        raise ValueError(
            f"objective={objective!r} is defined on a kernel with unit diagonal (k(x, x) = ‖x‖² = 1), but rows "
            f"of {name} have squared norms from {n2.min():.3g} to {n2.max():.3g} (row {worst}: {n2[worst]:.3g}); "
            "pass normalize=True (the default), or L2-normalise the rows yourself."
        )


def check_count(value, name: str, *, minimum: int = 1, maximum: int | None = None, what: str = "",
                example: int = 100, limit: str = "") -> int:
    """``value`` as an int in ``[minimum, maximum]``: the one check of every count argument of the library.

    Parameters
    ----------
    value
        What the caller passed (``bool`` is refused: ``True`` is not a count).
    name : str
        The argument's name as the caller wrote it (``"k"``, ``"batch_size"``, ``"quotas[3]"``).
    minimum, maximum : int
        Allowed range (``maximum=None``: unbounded).
    what : str
        What is counted, after "integer" (``" number of items"``).
    example : int
        A sensible value for the message.
    limit : str
        What ``maximum`` is, with its value (``"the number of items (n_samples=10)"``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} must be an integer{what}, e.g. {name}={example}.")
    if value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name}={value} must be {kind}{what}, e.g. {name}={example}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value} exceeds {limit}; pass {name} <= {maximum}.")
    return int(value)


def check_indices(indices, n: int, *, name: str = "indices", allow_repeats: bool = False) -> np.ndarray:
    """Indices as a host int64 array, each in ``[0, n)``."""
    check_in_memory(indices, name)
    if not hasattr(indices, "shape") and (isinstance(indices, (str, bytes)) or not np.iterable(indices)):
        example = f"[{indices!r}]" if isinstance(indices, int) else "[0, 5, 9]"
        raise ValueError(
            f"{name}={indices!r} is not a sequence of row numbers; pass a list or 1-D integer array, "
            f"e.g. {name}={example}."
        )
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
