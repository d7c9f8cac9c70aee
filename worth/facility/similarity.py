"""The similarity kernel of facility location, one compiled function for every path.

Every similarity — in the dense first pass, the settled lists, the on-demand columns and the kNN graph — is
computed from an inner product by :func:`_sim`, so the numbers stored in the lists and the ones compared with
them are bit for bit the same.
"""

from __future__ import annotations

import math

import numba

BLOCK_ELEMENTS = 1 << 22  # automatic block: ≈ 4M similarities (16–32 MB) per GEMM block
_RBF = 2
# Reassociation for the reductions (sums and dot products); contraction cannot change a cosine similarity
# (2·x and 0.5·x are exact, so a fused multiply–add rounds as the separate operations do).
_FAST = {"reassoc", "nsz", "arcp", "contract"}


# -- compiled kernels (NumPy path) --------------------------------------------------------------------
# ``_sim`` is inlined into its callers and takes their flags: the kernels whose similarities are stored in
# or compared with the lists (worth.facility.lists) are compiled without fast-math, so that every one of
# them computes a similarity from its inner product bit for bit the same way.

@numba.njit(cache=True, error_model="numpy", inline="always")
def _sim(gv, kind, scale, shift, gamma, nr, nc):
    """``s`` from the inner product ``gv`` of two rows with squared norms ``nr``, ``nc``; clamped at 0."""
    if kind == _RBF:
        d2 = nr + nc - 2.0 * gv
        if d2 < 0.0:
            d2 = 0.0
        return math.exp(-gamma * d2)
    s = scale * gv + shift
    return s if s > 0.0 else 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FAST)
def _column(X, p, kind, scale, shift, gamma, norms2, out):
    """``out[i] = s(i, p)`` for every row: the matrix–vector product and the similarity in one sequential loop.

    Not BLAS: a multi-threaded GEMV of this size spends more on waking its threads than on the product
    (milliseconds instead of a fraction of one on a busy machine), and it runs once per pick.
    """
    n, m = X.shape
    xp_ = X[p]
    npp = norms2[p]
    for i in range(n):
        acc = 0.0
        for k in range(m):
            acc += X[i, k] * xp_[k]
        out[i] = _sim(acc, kind, scale, shift, gamma, norms2[i], npp)
