"""Rank-one update of an eigendecomposition: ``C + x xᵀ`` from the eigenpairs of ``C``, in O(m·K²).

Greedy adds one row per step, so ``C`` changes by a rank-one term. A fresh ``eigh`` of the m×m matrix costs
≈ 9m³ flops; the update below costs one m×K×K product (K ≤ m+1 the non-deflated poles) plus O(K²) for
the roots and vectors — the classical divide-and-conquer merge step (LAPACK ``dlaed2``/``dlaed3``):

1. Project: ``z = Uᵀx``; while ``C`` is rank-deficient the residual ``x − Uz`` (orthogonalised twice)
   extends the basis, with the zero eigenvalue as its pole.
2. Deflate (``dlaed2``): a negligible ``z_i`` leaves its eigenpair unchanged; two poles closer than the
   tolerance are rotated (Givens) so that one carries all the weight and the other is deflated.
3. Roots: the new eigenvalues are the secular equation's roots (:func:`worth.spectral.secular.secular_roots_compiled`),
   each as a pole plus an offset, so every difference ``μ_j − d_i`` is accurate.
4. Vectors (Gu–Eisenstat, ``dlaed3``): recompute ``ẑ`` from the computed roots by Löwner's formula,
   ``ẑ_i² = Π_j (μ_j − d_i) / Π_{j≠i} (d_j − d_i)``, so that the computed roots are the *exact* eigenvalues
   of ``D + ẑẑᵀ``; its eigenvectors ``ẑ_i/(d_i − μ_j)`` are then orthogonal to working precision however
   close the roots, and ``U ← U V`` is one GEMM.

Each update keeps the columns orthonormal to working precision, but rounding accumulates over many steps;
:class:`worth.spectral.state.SpectralState` measures ``‖UᵀU − I‖`` and falls back to a fresh ``eigh`` when it
passes a bound (see ``eig_refresh`` there).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .secular import secular_roots_compiled

_EPS = float(np.finfo(np.float64).eps)


def zero_weight_floor(m: int) -> float:
    """Relative size below which the part of a row outside ``range(C)`` is rounding, not a new direction.

    ``‖x − Uz‖² ≤ zero_weight_floor(m)·‖x‖²`` keeps the rank here; :class:`worth.spectral.state.SpectralState` zeroes the
    zero-cluster weight ``w₀`` by the same rule, so both agree on the rank of ``C + x xᵀ``.
    """
    return 64 * m * _EPS


@numba.njit(cache=True, error_model="numpy")
def _loewner_vectors(d, origins, taus, z):
    """Eigenvectors of ``diag(d) + ẑẑᵀ`` (columns, normalised) with ``ẑ`` from Löwner's formula.

    ``d`` ascending, distinct; root ``j`` is ``origins[j] + taus[j]`` with ``origins[j]`` a pole, so
    ``μ_j − d_i = (origins[j] − d_i) + taus[j]`` keeps full relative precision.
    """
    K = d.shape[0]
    zhat = np.empty(K)
    for i in range(K):
        prod = (origins[i] - d[i]) + taus[i]
        for j in range(K):
            if j != i:
                prod *= ((origins[j] - d[i]) + taus[j]) / (d[j] - d[i])
        zhat[i] = math.copysign(math.sqrt(max(prod, 0.0)), z[i])
    V = np.empty((K, K))
    for j in range(K):
        norm = 0.0
        for i in range(K):
            v = zhat[i] / ((d[i] - origins[j]) - taus[j])
            V[i, j] = v
            norm += v * v
        norm = math.sqrt(norm)
        for i in range(K):
            V[i, j] /= norm
    return V


def _merge(d: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``diag(d) + z zᵀ`` (``d`` ascending and distinct, every ``z_i ≠ 0``): roots, then vectors."""
    lead = d[0] == 0.0  # the zero pole is the secular solver's first pole; add an empty one if absent
    poles = d if lead else np.concatenate([[0.0], d])
    w = z * z if lead else np.concatenate([[0.0], z * z])
    origins, taus = secular_roots_compiled(poles, w[None, :])
    origins, taus = origins[0], taus[0]
    if not lead:
        origins, taus = origins[1:], taus[1:]
    return origins + taus, _loewner_vectors(d, origins, taus, z)


def rank_one_update(lam: np.ndarray, U: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``U diag(lam) Uᵀ + x xᵀ`` (its non-zero part), ascending.

    Parameters
    ----------
    lam : ndarray, shape (r,)
        Positive eigenvalues of ``C``, ascending.
    U : ndarray, shape (m, r)
        Orthonormal eigenvectors of ``C`` (columns).
    x : ndarray, shape (m,)
        The added row.

    Returns
    -------
    lam_new : ndarray, shape (r,) or (r + 1,)
    U_new : ndarray, shape (m, r) or (m, r + 1)
    """
    m, r = U.shape
    z = U.T @ x
    xx = float(x @ x)
    d = np.asarray(lam, dtype=np.float64)
    basis = U
    if r < m:
        q = x - U @ z
        z2 = U.T @ q  # Gram–Schmidt twice ("twice is enough"): a small residual is orthogonal to U too
        q = q - U @ z2
        z = z + z2
        rho2 = float(q @ q)
        if rho2 > zero_weight_floor(m) * xx:
            basis = np.concatenate([(q / math.sqrt(rho2))[:, None], U], axis=1)
            d = np.concatenate([[0.0], d])
            z = np.concatenate([[math.sqrt(rho2)], z])
    K = d.size
    if K == 0:  # x = 0 added to C = 0: nothing to merge, the spectrum stays empty
        return d, basis
    d = d.copy()
    z = z.copy()
    copied = basis is not U
    zz = float(z @ z)
    tol = 8.0 * _EPS * max(float(d[-1]) if K else 0.0, zz)
    norm_z = math.sqrt(zz)
    active = np.abs(z) * norm_z > tol  # negligible coupling: the eigenpair stays
    # Close poles (dlaed2): rotate the weight of the lower onto the upper, deflate the lower.
    prev = -1
    for i in range(K):
        if not active[i]:
            continue
        if prev >= 0:
            h = math.hypot(z[prev], z[i])
            c, s = z[i] / h, z[prev] / h
            if abs(c * s * (d[i] - d[prev])) <= tol:
                if not copied:  # the caller's U is read-only here: copy before the first rotation
                    basis, copied = basis.copy(), True
                up, ui = basis[:, prev].copy(), basis[:, i].copy()
                basis[:, prev] = c * up - s * ui
                basis[:, i] = s * up + c * ui
                dp, di = d[prev], d[i]
                d[prev] = c * c * dp + s * s * di
                d[i] = s * s * dp + c * c * di
                z[prev], z[i] = 0.0, h
                active[prev] = False
        prev = i
    act = np.flatnonzero(active)
    keep = np.flatnonzero(~active)
    if keep.size == 0:  # the common case: nothing deflated, the roots come out ascending and positive
        mu, V = _merge(d, z)
        return mu, basis @ V
    mu_parts, vec_parts = [d[keep]], [basis[:, keep]]
    if act.size:
        mu, V = _merge(d[act], z[act])
        mu_parts.append(mu)
        vec_parts.append(basis[:, act] @ V)
    mu = np.concatenate(mu_parts)
    vecs = np.concatenate(vec_parts, axis=1)
    positive = mu > 0.0
    order = np.argsort(mu[positive], kind="stable")
    return mu[positive][order], np.ascontiguousarray(vecs[:, positive][:, order])
