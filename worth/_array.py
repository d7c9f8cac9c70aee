"""Array-namespace helpers: the namespace comes from the inputs, and the output goes back in it.

The core computes in float64 in the caller's namespace (NumPy, CuPy, torch, array-api-strict). Only the
numba fast path converts to NumPy, and only when the input already is NumPy.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np


def namespace(*arrays: Any):
    """Return the array-API namespace shared by ``arrays`` (NumPy for lists and scalars)."""
    real = [a for a in arrays if a is not None and not isinstance(a, (int, float, list, tuple))]
    if not real:
        return array_api_compat.numpy
    return array_api_compat.array_namespace(*real)


def is_numpy(xp) -> bool:
    """True for NumPy's namespace (plain or wrapped by array-api-compat)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cupy(xp) -> bool:
    return array_api_compat.is_cupy_namespace(xp)


def device(x):
    return array_api_compat.device(x)


def to_numpy(x) -> np.ndarray:
    """Copy any array-API array to a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def from_numpy(a: np.ndarray, xp, like=None):
    """Put a NumPy array into namespace ``xp`` (on the device of ``like`` when given)."""
    if is_numpy(xp):
        return np.asarray(a)
    dev = device(like) if like is not None else None
    return xp.asarray(a, device=dev) if dev is not None else xp.asarray(a)


def scalar(x) -> float:
    """A 0-d array of any namespace as a Python float."""
    return float(to_numpy(x)) if not isinstance(x, (int, float)) else float(x)


def row_norms2(X, xp):
    """Squared L2 norm of every row; on NumPy without the n×m temporary of ``sum(X * X)``."""
    if is_numpy(xp):
        return np.einsum("ij,ij->i", X, X)
    return xp.sum(X * X, axis=1)
