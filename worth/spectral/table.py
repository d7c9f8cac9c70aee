"""The closed-form table's per-pick update (:class:`worth.spectral.methods.ClosedFormTable`) in one pass over the rows.

After a pick ``v`` the table needs ``p = Xu`` and ``q = XMu`` for every row (Sherman–Morrison, ``docs/gains.md``).
As one product ``X @ [u, Mu]`` that is a GEMM with two columns, which OpenBLAS runs at a third of the memory
bandwidth a matrix–vector product reaches: on Fashion-MNIST pixels (60,000 × 784, float64, one thread) 51 ms a
pick against 17 ms for one ``X @ u`` — and the hybrid maximiser's picks spent 73 % of their time there
(``bench/README.md``, issue 22). :func:`update_table` reads each row once, takes both dot products and updates
``a`` and ``b`` in place, in blocks of rows on the run's threads (:func:`worth.threads.run_blocks`; a row's
numbers never depend on which block holds it, so neither do the picks on the thread count).

The dot products are reassociated (fast-math: they vectorise), so they differ from BLAS's in the last bits; the
table is a screen in any case — the step's contenders are recomputed from the kept inverse
(:meth:`~worth.spectral.methods.ClosedFormTable.refine`) and the whole table exactly every ``refresh`` picks.
"""

from __future__ import annotations

import numba
import numpy as np

from ..threads import available, run_blocks

_FAST = {"reassoc", "contract", "arcp", "nsz"}  # no "nnan"/"ninf": the rows are finite, the flags not needed

#: Rows below which the update stays on the calling thread (a thread hop costs more than the work).
_SPLIT_ROWS = 8192


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _dots2(x, u, w):
    p = 0.0
    q = 0.0
    for j in range(x.shape[0]):
        p += x[j] * u[j]
        q += x[j] * w[j]
    return p, q


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _dot(x, u):
    p = 0.0
    for j in range(x.shape[0]):
        p += x[j] * u[j]
    return p


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _update_rows(X, u, w, d, uu, a, b, squared, lo, hi):
    """Rows ``lo:hi``: ``r = p/d``, ``a −= p·r`` and (``squared``) ``b −= 2qr − r²‖u‖²``."""
    for i in range(lo, hi):
        if squared:
            p, q = _dots2(X[i], u, w)
            r = p / d
            b[i] = b[i] - 2.0 * q * r + (r * r) * uu
        else:
            p = _dot(X[i], u)
            r = p / d
        a[i] = a[i] - p * r


def update_table(X: np.ndarray, u: np.ndarray, w: np.ndarray | None, d: float, uu: float, a: np.ndarray,
                 b: np.ndarray | None) -> None:
    """Sherman–Morrison's update of the table after a pick, in place: with ``p = Xu``, ``q = Xw`` (``w = Mu``)
    and ``r = p/d``, ``a ← a − p·r`` and, where ``b`` is kept, ``b ← b − 2qr + r²·uu`` (``uu = ‖u‖²``, which
    the caller has for the pick's own gain).

    ``X`` is C-contiguous (n, m); ``u``, ``w`` (m,) of its dtype; ``a``, ``b`` (n,), written in place.
    """
    squared = b is not None
    u = np.ascontiguousarray(u, dtype=X.dtype)
    w = np.ascontiguousarray(w if squared else u, dtype=X.dtype)
    bb = b if squared else a  # unused without b; numba needs an array of the same type
    uu = float(uu)
    n = X.shape[0]
    t = min(available(), max(1, n // _SPLIT_ROWS))
    edges = [n * i // t for i in range(t + 1)]
    run_blocks(lambda lo, hi: _update_rows(X, u, w, float(d), uu, a, bb, squared, lo, hi), edges)
