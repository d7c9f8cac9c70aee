"""Roots of the secular equation of a rank-one update, for many candidates at once.

For a PSD matrix with distinct eigenvalues (poles) ``d_0 = 0 < d_1 < … < d_{K-1}`` and a candidate ``x``
with weights ``w_j`` (squared projections on each eigenspace; ``w_0 = ‖x‖² − ‖z‖²`` for the zero
eigenspace), the eigenvalues that move under ``C + x xᵀ`` are the roots of

    s(μ) = 1 + Σ_j w_j / (d_j − μ) = 0,

one in each interval between consecutive *active* poles (``w_j > 0``) and one in ``(d_last, d_last + Σ w]``.
Poles with ``w_j = 0`` are deflated: their eigenvalue does not move.

Each root is returned as an *origin* pole value ``o`` and an offset ``τ`` (``μ = o + τ``), with the origin
being the nearer pole, as LAPACK's ``dlaed4`` does: ``τ`` then carries full relative precision even when the
root hugs a pole, and the objective's ``φ(o + τ) − φ(o)`` can be taken in a stable closed form.

Two implementations of one algorithm. Start: evaluate at each interval's midpoint, take the nearer pole as
the origin. Iterate with Gragg's zero finder: ``a + b/(δ_l − h) + c/(δ_r − h)`` matching the value, slope and
curvature at the current point (cubic convergence; ``b, c`` come from sums of same-signed terms, so they
keep full precision next to a pole); a step that leaves the bracket falls back to bisection, and a step
below ``_TRUST_STEP_CUBIC`` of the root is taken without another O(K) evaluation. The last root (no right
pole) uses the two-parameter model. All the roots of a candidate iterate in lock-step, so one pass over the
poles serves every open root:

* :func:`secular_roots_compiled` — numba, one candidate per thread, O(K) memory, the CPU fast path
  (:func:`secular_moved_sum` fuses the objective into it).
* :func:`secular_roots_portable` — array-API (NumPy, CuPy, torch), vectorised over candidates and roots.

:func:`_solve_one` (one root at a time, the fixed-weight model of dlaed4) serves the single zero-cluster root
of the quadrature route.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._array import is_cupy

_EPS = float(np.finfo(np.float64).eps)
_MAX_ITER = 80
_TRUST_STEP = 1e-7
_TRUST_STEP_CUBIC = 1e-5  # Gragg's step converges cubically: the error left after it is ≈ step³ (rounding)


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _evaluate(delta, w, n_active, left_pos, tau):
    """Sums of ``w_p/(δ_p − τ)`` left of the root (``p <= left_pos``) and right of it, with derivatives.

    ``delta`` holds the poles already shifted to the root's origin, so the only rounding next to a pole
    is in ``δ_p − τ`` itself; the sums may be reassociated (vectorised) without losing accuracy.
    """
    psi = 0.0
    dpsi = 0.0
    for p in range(left_pos + 1):
        inv = 1.0 / (delta[p] - tau)
        t = w[p] * inv
        psi += t
        dpsi += t * inv
    phi = 0.0
    dphi = 0.0
    for p in range(left_pos + 1, n_active):
        inv = 1.0 / (delta[p] - tau)
        t = w[p] * inv
        phi += t
        dphi += t * inv
    return psi, dpsi, phi, dphi


@numba.njit(cache=True, error_model="numpy", inline="always")
def _model_step(c, s_l, s_r, delta_l, delta_r, last):
    """Offset ``h`` solving ``c + s_l/(Δ_l − h) + s_r/(Δ_r − h) = 0`` inside ``(Δ_l, Δ_r)`` (NaN if none).

    For the last root there is no right pole: ``c + s_l/(Δ_l − h) = 0``.
    """
    if last:
        return delta_l + s_l / c if c > 0.0 else math.nan
    b = c * (delta_l + delta_r) + s_l + s_r
    cc = c * delta_l * delta_r + s_l * delta_r + s_r * delta_l
    if c == 0.0:
        return cc / b if b != 0.0 else math.nan
    disc = b * b - 4.0 * c * cc
    if disc < 0.0:
        disc = 0.0
    qq = 0.5 * (b + math.copysign(math.sqrt(disc), b))
    h1 = qq / c
    if delta_l < h1 < delta_r:
        return h1
    if qq != 0.0:
        h2 = cc / qq
        if delta_l < h2 < delta_r:
            return h2
    return math.nan


@numba.njit(cache=True, error_model="numpy")
def _solve_one(dA, wA, n_active, p, delta):
    """Root belonging to active pole ``p``: returns (origin, τ).

    Start: at the interval's midpoint, decide which pole is nearer the root (the origin), then solve the
    model with the two adjacent poles exact and the rest frozen (as LAPACK's dlaed4 does). Iterate: the
    sums left and right of the root are each modelled by one pole at the adjacent pole matching value and
    slope; a step that leaves the bracket is replaced by bisection.
    """
    last = p == n_active - 1
    w_l = wA[p]
    if last:
        total = 0.0
        for q in range(n_active):
            total += wA[q]
        origin = dA[p]
        for q in range(n_active):
            delta[q] = dA[q] - origin
        lo = 0.0
        hi = total * (1.0 + 4.0 * _EPS)  # the root can sit on d + Σw (one active pole)
        mid = 0.5 * total
        psi, dpsi, phi, dphi = _evaluate(delta, wA, n_active, p, mid)
        c0 = 1.0 + (psi - w_l / (0.0 - mid))
        dl = 0.0
        dr = math.inf
        tau = _model_step(c0, w_l, 0.0, 0.0, dr, True)
    else:
        w_r = wA[p + 1]
        gap = dA[p + 1] - dA[p]
        origin = dA[p]
        for q in range(n_active):
            delta[q] = dA[q] - origin
        mid = 0.5 * gap
        psi, dpsi, phi, dphi = _evaluate(delta, wA, n_active, p, mid)
        c0 = 1.0 + (psi - w_l / (0.0 - mid)) + (phi - w_r / (gap - mid))
        if 1.0 + psi + phi >= 0.0:  # root in (d_p, mid]: measure from the left pole
            lo = 0.0
            hi = mid
            dl = 0.0
            dr = gap
        else:  # root in (mid, d_{p+1}): measure from the right pole
            origin = dA[p + 1]
            for q in range(n_active):
                delta[q] = dA[q] - origin
            lo = -mid
            hi = 0.0
            dl = -gap
            dr = 0.0
        tau = _model_step(c0, w_l, w_r, dl, dr, False)
    if not (lo < tau < hi):
        tau = 0.5 * (lo + hi)
    for _ in range(_MAX_ITER):
        psi, dpsi, phi, dphi = _evaluate(delta, wA, n_active, p, tau)
        f = 1.0 + psi + phi
        if f == 0.0:
            break
        if f < 0.0:
            lo = tau
        else:
            hi = tau
        # Stop when f is at the rounding level of its own evaluation.
        if abs(f) <= 8.0 * _EPS * (1.0 + n_active) * (1.0 - psi + phi):
            break
        delta_l = dl - tau
        s_l = delta_l * delta_l * dpsi
        if last:
            c = 1.0 + psi - s_l / delta_l + phi
            h = _model_step(c, s_l, 0.0, delta_l, math.inf, True)
        else:
            delta_r = dr - tau
            # Fixed-weight model (Gragg; dlaed4's choice by the nearer pole): the nearer adjacent pole keeps
            # its exact weight, the other's weight matches the slope, the constant matches the value.
            slope = dpsi + dphi
            if dl == 0.0:
                s_l = wA[p]
                s_r = max(slope - s_l / (delta_l * delta_l), 0.0) * delta_r * delta_r
            else:
                s_r = wA[p + 1]
                s_l = max(slope - s_r / (delta_r * delta_r), 0.0) * delta_l * delta_l
            c = f - s_l / delta_l - s_r / delta_r
            h = _model_step(c, s_l, s_r, delta_l, delta_r, False)
        new = tau + h
        if not (lo < new < hi):
            new = 0.5 * (lo + hi)
        elif abs(h) <= _TRUST_STEP * abs(new):
            # The model step converges quadratically: once it is this small, the root after it is exact
            # to rounding, and confirming it would cost another O(K) evaluation.
            tau = new
            break
        if abs(new - tau) <= 2.0 * _EPS * max(abs(tau), abs(new)) or hi - lo <= 2.0 * _EPS * max(abs(lo), abs(hi)):
            tau = new
            break
        tau = new
    return origin, tau


@numba.njit(cache=True, error_model="numpy")
def _sums_all(dA, wA, n_active, o, t, dl, dr, n_open, f, fa, f1, bl, br):
    """Sums over the poles for the ``n_open`` open roots at ``o[r] + t[r]``, vectorised across roots.

    With ``x_q = 1/(δ_q − τ)`` and ``t_q = w_q x_q``: ``f = Σ t_q``, ``fa = Σ |t_q|`` (the rounding scale),
    ``f1 = Σ t_q x_q`` (the slope), and the two curvature sums of Gragg's model,
    ``bl = Σ t_q x_q² (d_q − dr)`` and ``br = Σ t_q x_q² (dl − d_q)`` (``dl``, ``dr``: the root's adjacent
    poles), whose terms are all ``≥ 0`` — no cancellation, whichever pole the root hugs.

    The poles are the outer loop and the roots the inner one: each root's sums are accumulated in pole order
    (no reassociation: the inner loop is elementwise), and the shifted pole ``(d_q − o) − τ`` is computed
    as :func:`_solve_one` computes it, so the rounding next to a pole is the same.
    """
    for r in range(n_open):
        f[r] = 0.0
        fa[r] = 0.0
        f1[r] = 0.0
        bl[r] = 0.0
        br[r] = 0.0
    for q in range(n_active):
        dq = dA[q]
        wq = wA[q]
        for r in range(n_open):
            inv = 1.0 / ((dq - o[r]) - t[r])
            term = wq * inv
            slope = term * inv
            curve = slope * inv
            f[r] += term
            fa[r] += abs(term)
            f1[r] += slope
            bl[r] += curve * (dq - dr[r])
            br[r] += curve * (dl[r] - dq)


@numba.njit(cache=True, error_model="numpy")
def _solve_all(dA, wA, n_active, origins, taus):
    """Every root of one candidate (:func:`_solve_range` over all of them)."""
    _solve_range(dA, wA, n_active, 0, n_active, origins, taus)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _solve_range(dA, wA, n_active, r0, r1, origins, taus):
    """Roots ``r0 <= p < r1`` of one candidate, iterated in lock-step with Gragg's cubically convergent model,
    into ``origins[p − r0]``, ``taus[p − r0]``.

    Start: evaluate at each interval's midpoint, take the nearer pole as the origin (as :func:`_solve_one`
    and LAPACK's dlaed4 do), and take Gragg's step from the midpoint. Each iteration then evaluates the sums of all open roots in one pass (:func:`_sums_all`: the roots' scalar
    steps and division latencies overlap instead of forming one dependent chain per root) and solves
    ``a + b/(δ_l − h) + c/(δ_r − h) = 0`` with ``a, b, c`` matching the value, slope and curvature at the
    current point (Gragg's zero finder: cubic convergence, ``b, c ≥ 0`` always). ``b`` and ``c`` come from
    sums of same-signed terms, so they keep full relative precision even next to a pole. A step that
    leaves the bracket is replaced by bisection; a step below ``_TRUST_STEP_CUBIC`` of the root is taken
    without confirming it (cubic convergence leaves an error of order ``step³``, at the rounding level).
    The last root (no right pole) keeps the two-parameter model and ``_TRUST_STEP``.

    A root's iterates depend on the poles, the weights and its own state only (the sums run elementwise
    over roots, not reassociated), so a range gives each root bit for bit what the whole set gives it: the
    rank-one eigen-update solves its roots in ranges on several threads (``nogil``;
    :mod:`worth.spectral.eigupdate`).

    Measured on unit rows with |S| ≈ m (dense spectra): 3.5 O(K) evaluations per root, midpoint included,
    against 4.2 for the root-by-root fixed-weight iteration of :func:`_solve_one`.
    """
    n = n_active
    nr = r1 - r0
    if nr <= 0:
        return
    # Indexed by the root's place in the range (k = p − r0).
    lo = np.empty(nr)
    hi = np.empty(nr)
    dl = np.empty(nr)
    dr = np.empty(nr)
    # Compacted per open root: its index in the range, origin, offset, adjacent poles, and the sums.
    idx = np.empty(nr, dtype=np.int64)
    o = np.empty(nr)
    t = np.empty(nr)
    pl = np.empty(nr)
    pr = np.empty(nr)
    f = np.empty(nr)
    fa = np.empty(nr)
    f1 = np.empty(nr)
    bl = np.empty(nr)
    br = np.empty(nr)
    total = 0.0
    for q in range(n):
        total += wA[q]
    for k in range(nr):
        p = r0 + k
        idx[k] = k
        o[k] = dA[p]
        t[k] = 0.5 * total if p == n - 1 else 0.5 * (dA[p + 1] - dA[p])
        pl[k] = dA[p]
        pr[k] = dA[p] if p == n - 1 else dA[p + 1]
    _sums_all(dA, wA, n, o, t, pl, pr, nr, f, fa, f1, bl, br)
    for k in range(nr):
        p = r0 + k
        w_l = wA[p]
        mid = t[k]
        origin = dA[p]
        if p == n - 1:
            c0 = 1.0 + (f[k] - w_l / (0.0 - mid))
            lo[k] = 0.0
            hi[k] = total * (1.0 + 4.0 * _EPS)
            dl[k] = 0.0
            dr[k] = math.inf
            tau = _model_step(c0, w_l, 0.0, 0.0, math.inf, True)
        else:
            gap = dA[p + 1] - dA[p]
            if 1.0 + f[k] >= 0.0:
                lo[k] = 0.0
                hi[k] = mid
                dl[k] = 0.0
                dr[k] = gap
            else:
                origin = dA[p + 1]
                lo[k] = -mid
                hi[k] = 0.0
                dl[k] = -gap
                dr[k] = 0.0
            # Gragg's model at the midpoint (value, slope and curvature there) gives the first offset.
            ml = -mid
            mr = gap - mid
            s_l = -bl[k] * (ml * ml * ml) / gap
            s_r = -br[k] * (mr * mr * mr) / gap
            here = mid if dl[k] == 0.0 else -mid
            tau = here + _model_step(1.0 + f[k] - s_l / ml - s_r / mr, s_l, s_r, ml, mr, False)
        if not (lo[k] < tau < hi[k]):
            tau = 0.5 * (lo[k] + hi[k])
        origins[k] = origin
        taus[k] = tau
        o[k] = origin
        t[k] = tau
    n_open = nr
    for _ in range(_MAX_ITER):
        if n_open == 0:
            break
        _sums_all(dA, wA, n, o, t, pl, pr, n_open, f, fa, f1, bl, br)
        keep = 0
        for r in range(n_open):
            k = idx[r]
            p = r0 + k
            tau = t[r]
            val = 1.0 + f[r]
            if val == 0.0:
                continue
            if val < 0.0:
                lo[k] = tau
            else:
                hi[k] = tau
            # Stop when the value is at the rounding level of its own evaluation.
            if abs(val) <= 8.0 * _EPS * (1.0 + n) * (1.0 + fa[r]):
                continue
            delta_l = dl[k] - tau
            if p == n - 1:
                s_l = delta_l * delta_l * f1[r]
                h = _model_step(val - s_l / delta_l, s_l, 0.0, delta_l, math.inf, True)
            else:
                delta_r = dr[k] - tau
                gap = pr[r] - pl[r]
                s_l = -bl[r] * (delta_l * delta_l * delta_l) / gap
                s_r = -br[r] * (delta_r * delta_r * delta_r) / gap
                h = _model_step(val - s_l / delta_l - s_r / delta_r, s_l, s_r, delta_l, delta_r, False)
            new = tau + h
            if not (lo[k] < new < hi[k]):
                new = 0.5 * (lo[k] + hi[k])
            elif abs(h) <= (_TRUST_STEP if p == n - 1 else _TRUST_STEP_CUBIC) * abs(new):
                taus[k] = new
                continue
            if abs(new - tau) <= 2.0 * _EPS * max(abs(tau), abs(new)) or \
                    hi[k] - lo[k] <= 2.0 * _EPS * max(abs(lo[k]), abs(hi[k])):
                taus[k] = new
                continue
            taus[k] = new
            idx[keep] = k
            o[keep] = origins[k]
            t[keep] = new
            pl[keep] = pl[r]
            pr[keep] = pr[r]
            keep += 1
        n_open = keep


@numba.njit(cache=True, error_model="numpy", inline="always")
def _active_poles(d, w):
    """The active poles (``w > 0``) of one candidate, compacted: their indices, values and weights."""
    n_poles = w.shape[0]
    active = np.empty(n_poles, dtype=np.int64)
    n_active = 0
    for j in range(n_poles):
        if w[j] > 0.0:
            active[n_active] = j
            n_active += 1
    active = active[:n_active]
    dA = np.empty(n_active)
    wA = np.empty(n_active)
    for p in range(n_active):
        dA[p] = d[active[p]]
        wA[p] = w[active[p]]
    return active, dA, wA


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _roots_kernel(d, weights, origins, taus):
    n_cand, n_poles = weights.shape
    for b in numba.prange(n_cand):
        for j in range(n_poles):
            origins[b, j] = d[j]
            taus[b, j] = 0.0
        active, dA, wA = _active_poles(d, weights[b])
        n_active = active.shape[0]
        o = np.empty(n_active)
        t = np.empty(n_active)
        _solve_all(dA, wA, n_active, o, t)
        for p in range(n_active):
            origins[b, active[p]] = o[p]
            taus[b, active[p]] = t[p]


def secular_roots_compiled(poles: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roots of every candidate's secular equation, compiled CPU path.

    Parameters
    ----------
    poles : ndarray, shape (K,)
        Distinct eigenvalues, ascending, ``poles[0] == 0`` (the zero eigenspace).
    weights : ndarray, shape (B, K)
        Non-negative weight of each candidate on each pole; ``0`` deflates the pole.

    Returns
    -------
    origins, taus : ndarray, shape (B, K)
        Root ``k`` of candidate ``b`` is ``origins[b, k] + taus[b, k]``; deflated poles give
        ``(poles[k], 0)``.
    """
    d = np.ascontiguousarray(poles, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    origins = np.empty_like(w)
    taus = np.empty_like(w)
    if w.size:
        _roots_kernel(d, w, origins, taus)
    return origins, taus


def secular_roots_portable(poles, weights, xp, *, pole_block: int = 64):
    """The same roots as :func:`secular_roots_compiled`, written against the array API.

    Vectorised over all candidates and all roots (the same start, model and safeguards as the compiled
    kernel); the pole sums are accumulated over blocks of ``pole_block`` poles, so memory stays
    ``O(B·K·pole_block)``. Sums are taken with the poles shifted to each root's origin, as in dlaed4.
    """
    # The roots are homogeneous in (poles, weights): solve on data scaled by a power of two (exact) near 1,
    # since the Gragg model forms cubes of pole gaps, which overflow or underflow for eigenvalues near
    # 1e±100 (rows of norm 1e±50 and beyond; issue 21).
    top = max(float(xp.max(poles)) if poles.shape[0] else 0.0,
              float(xp.max(xp.sum(weights, axis=1))) if weights.shape[0] else 0.0)
    if top > 0 and not 2.0 ** -64 <= top <= 2.0 ** 64:
        unit = 2.0 ** -math.floor(math.log2(top))
        origin, tau = _secular_roots_portable(poles * unit, weights * unit, xp, pole_block)
        return origin / unit, tau / unit
    return _secular_roots_portable(poles, weights, xp, pole_block)


def _secular_roots_portable(poles, weights, xp, pole_block):
    n_cand, n_poles = weights.shape
    dtype = weights.dtype
    active = weights > 0
    zeros = xp.zeros_like(weights)
    ones = xp.ones_like(weights)
    nan = xp.full_like(weights, math.nan)
    d_full = xp.reshape(poles, (1, n_poles)) + zeros
    eps = _EPS

    # Next active pole to the right of each pole (its value and weight): a right-to-left scan.
    right_cols, wr_cols = [None] * n_poles, [None] * n_poles
    nxt = xp.full((n_cand,), math.inf, dtype=dtype)
    nxt_w = xp.zeros((n_cand,), dtype=dtype)
    for k in range(n_poles - 1, -1, -1):
        right_cols[k], wr_cols[k] = nxt, nxt_w
        nxt = xp.where(active[:, k], d_full[:, k], nxt)
        nxt_w = xp.where(active[:, k], weights[:, k], nxt_w)
    right = xp.stack(right_cols, axis=1)
    w_r = xp.stack(wr_cols, axis=1)
    has_right = right < math.inf
    total = xp.sum(weights, axis=1, keepdims=True) + zeros
    gap = xp.where(has_right, right - d_full, total)
    safe_w = xp.where(active, weights, zeros)
    w_l = safe_w
    own = xp.reshape(xp.arange(n_poles), (1, n_poles, 1))

    pl = d_full
    pr = xp.where(has_right, right, d_full)

    def sums(origin, tau):
        """psi, dpsi (poles at or left of the root's own pole), phi, dphi (right of it), and Gragg's
        curvature sums bl = Σ w x³ (d − pr), br = Σ w x³ (pl − d) (``x = 1/(d − o − τ)``), at origin + τ."""
        o = xp.reshape(origin, (n_cand, n_poles, 1))
        t = xp.reshape(tau, (n_cand, n_poles, 1))
        pl3 = xp.reshape(pl, (n_cand, n_poles, 1))
        pr3 = xp.reshape(pr, (n_cand, n_poles, 1))
        psi = dpsi = phi = dphi = bl = br = xp.zeros_like(origin)
        for start in range(0, n_poles, pole_block):
            stop = min(start + pole_block, n_poles)
            dj = xp.reshape(poles[start:stop], (1, 1, stop - start))
            wj = xp.reshape(safe_w[:, start:stop], (n_cand, 1, stop - start))
            den = (dj - o) - t
            den = xp.where(wj > 0, den, xp.ones_like(den))
            inv = 1.0 / den
            term = wj * inv
            dterm = term * inv
            curve = dterm * inv
            left = xp.reshape(xp.arange(start, stop), (1, 1, stop - start)) <= own
            psi = psi + xp.sum(xp.where(left, term, xp.zeros_like(term)), axis=2)
            dpsi = dpsi + xp.sum(xp.where(left, dterm, xp.zeros_like(dterm)), axis=2)
            phi = phi + xp.sum(xp.where(left, xp.zeros_like(term), term), axis=2)
            dphi = dphi + xp.sum(xp.where(left, xp.zeros_like(dterm), dterm), axis=2)
            bl = bl + xp.sum(curve * (dj - pr3), axis=2)
            br = br + xp.sum(curve * (pl3 - dj), axis=2)
        return psi, dpsi, phi, dphi, bl, br

    def gragg(f, bl, br, delta_l, delta_r):
        """Gragg's weights (interior roots): ``s_l = −bl δ_l³/gap``, ``s_r = −br δ_r³/gap``, and the constant."""
        g = xp.where(has_right, gap, ones)
        dr_ = xp.where(has_right, delta_r, ones)
        s_l = -bl * (delta_l * delta_l * delta_l) / g
        s_r = -br * (dr_ * dr_ * dr_) / g
        return f - s_l / delta_l - s_r / dr_, s_l, s_r

    def model_step(c, s_l, s_r, delta_l, delta_r):
        """Vectorised ``_model_step``: last roots (no right pole) and interior roots."""
        c_pos = xp.where(c > 0, c, ones)
        last = xp.where(c > 0, delta_l + s_l / c_pos, nan)
        dr = xp.where(has_right, delta_r, ones)
        b = c * (delta_l + dr) + s_l + s_r
        cc = c * delta_l * dr + s_l * dr + s_r * delta_l
        disc = xp.sqrt(xp.clip(b * b - 4.0 * c * cc, 0.0, None))
        qq = 0.5 * (b + xp.where(b >= 0, ones, -ones) * disc)
        h1 = qq / xp.where(c != 0, c, ones)
        h2 = cc / xp.where(qq != 0, qq, ones)
        in1 = (c != 0) & (delta_l < h1) & (h1 < dr)
        in2 = (qq != 0) & (delta_l < h2) & (h2 < dr)
        linear = (c == 0) & (b != 0)
        inner = xp.where(in1, h1, xp.where(in2, h2, xp.where(linear, cc / xp.where(b != 0, b, ones), nan)))
        return xp.where(has_right, inner, last)

    # Start: evaluate at the middle of each interval, choose the origin, take Gragg's step from there
    # (the last root: the two-pole model with the rest frozen).
    half = 0.5 * gap
    psi, dpsi, phi, dphi, bl, br = sums(d_full, half)
    c0 = 1.0 + (psi + w_l / half)
    from_left = (1.0 + psi + phi >= 0) | ~has_right
    origin = xp.where(from_left, d_full, right)
    lo = xp.where(from_left, zeros, -half)
    hi = xp.where(from_left, xp.where(has_right, half, total * (1.0 + 4.0 * eps)), zeros)
    dl = xp.where(from_left, zeros, -gap)
    dr = xp.where(from_left, gap, zeros)
    c_mid, sl_mid, sr_mid = gragg(1.0 + psi + phi, bl, br, -half, gap - half)
    here = xp.where(from_left, half, -half)
    tau = xp.where(has_right, here + model_step(c_mid, sl_mid, sr_mid, -half, gap - half),
                   model_step(c0, w_l, zeros, dl, dr))
    tau = xp.where((tau > lo) & (tau < hi), tau, 0.5 * (lo + hi))
    trust = xp.where(has_right, _TRUST_STEP_CUBIC * ones, _TRUST_STEP * ones)
    done = ~active
    for _ in range(_MAX_ITER):
        psi, dpsi, phi, dphi, bl, br = sums(origin, tau)
        f = 1.0 + psi + phi
        lo = xp.where((f < 0) & ~done, tau, lo)
        hi = xp.where((f > 0) & ~done, tau, hi)
        done = done | (xp.abs(f) <= 8.0 * eps * (1.0 + n_poles) * (1.0 - psi + phi))
        if bool(xp.all(done)):
            break
        delta_l = dl - tau
        delta_r = xp.where(has_right, dr - tau, ones)
        c, s_l, s_r = gragg(f, bl, br, delta_l, delta_r)
        s_last = delta_l * delta_l * dpsi
        c = xp.where(has_right, c, f - s_last / delta_l)
        s_l = xp.where(has_right, s_l, s_last)
        s_r = xp.where(has_right, s_r, zeros)
        h = model_step(c, s_l, s_r, delta_l, delta_r)
        new = tau + h
        ok = (new > lo) & (new < hi)
        trusted = ok & (xp.abs(h) <= trust * xp.abs(new))
        new = xp.where(ok, new, 0.5 * (lo + hi))
        small = (xp.abs(new - tau) <= 2.0 * eps * xp.maximum(xp.abs(tau), xp.abs(new))) | (
            hi - lo <= 4.0 * eps * xp.maximum(xp.abs(lo), xp.abs(hi))
        )
        tau = xp.where(done, tau, new)
        done = done | small | trusted
    origin = xp.where(active, origin, d_full)
    tau = xp.where(active, tau, zeros)
    return origin, tau


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _zero_root_kernel(d, weights, out):
    n_cand = weights.shape[0]
    for b in numba.prange(n_cand):
        w = weights[b]
        out[b] = 0.0
        if not w[0] > 0.0:
            continue
        _, dA, wA = _active_poles(d, w)
        n_active = dA.shape[0]
        delta = np.empty(n_active)
        o, t = _solve_one(dA, wA, n_active, 0, delta)
        out[b] = o + t


def zero_cluster_root(poles, weights, xp=None):
    """The root that leaves the zero eigenvalue cluster (``0`` where the candidate has no weight there).

    Only this one root is needed by the quadrature route; it costs O(K) per iteration instead of the
    O(K²) of all roots. NumPy input runs the compiled kernel, CuPy input the CUDA kernel of
    :mod:`worth.spectral.cuda` (one thread per candidate), other namespaces the portable solver.
    """
    if xp is None or isinstance(weights, np.ndarray):
        w = np.ascontiguousarray(weights, dtype=np.float64)
        out = np.zeros(w.shape[0])
        if w.size:
            _zero_root_kernel(np.ascontiguousarray(poles, dtype=np.float64), w, out)
        return out
    if is_cupy(xp):
        from .cuda import zero_root_cupy

        return zero_root_cupy(poles, weights)
    origin, tau = secular_roots_portable(poles, weights, xp)
    return origin[:, 0] + tau[:, 0]


# -- fused gains: Σ_k φ(μ_k) − φ(d_k) inside the kernel (no B×K temporaries) ---------------------------
XLOGX, POWER, LOG1P, HYBRID = 0, 1, 2, 3


@numba.njit(cache=True, error_model="numpy", inline="always")
def _phi(kind, sign, a, c, t):
    """``φ(t)`` for the kernel's objective families (``t >= 0``)."""
    if t <= 0.0:
        return 0.0
    if kind == XLOGX:
        return sign * t * math.log(t)
    if kind == POWER:
        return sign * t ** a
    if kind == LOG1P:
        return sign * math.log1p(t / a)
    return sign * -math.expm1(-a * math.log1p(t / c))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _moved(kind, sign, a, c, o, tau, d):
    """``φ(o + τ) − φ(d)``, in a stable closed form when the root is measured from its own pole (``o == d``)."""
    if o != d or d <= 0.0:
        return _phi(kind, sign, a, c, o + tau) - _phi(kind, sign, a, c, d)
    if kind == XLOGX:
        return sign * (tau * math.log(d + tau) + d * math.log1p(tau / d))
    if kind == POWER:
        return sign * d ** a * math.expm1(a * math.log1p(tau / d))
    if kind == LOG1P:
        return sign * math.log1p(tau / (a + d))
    return sign * math.exp(-a * math.log1p(d / c)) * -math.expm1(-a * math.log1p(tau / (c + d)))


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _moved_sum_kernel(d, weights, kind, sign, a, c, out):
    n_cand = weights.shape[0]
    for b in numba.prange(n_cand):
        w = weights[b]
        _, dA, wA = _active_poles(d, w)
        n_active = dA.shape[0]
        o = np.empty(n_active)
        t = np.empty(n_active)
        _solve_all(dA, wA, n_active, o, t)
        total = 0.0
        for p in range(n_active):
            total += _moved(kind, sign, a, c, o[p], t[p], dA[p])
        out[b] = total


def secular_moved_sum(poles: np.ndarray, weights: np.ndarray, family: tuple[int, float, float, float]) -> np.ndarray:
    """``Σ_k φ(μ_k) − φ(d_k)`` per candidate, roots and objective fused in one compiled pass.

    ``family`` is ``(kind, sign, a, c)``: ``XLOGX`` (``sign·t log t``), ``POWER`` (``sign·t^a``), ``LOG1P``
    (``sign·log(1 + t/a)``), ``HYBRID`` (``sign·(1 − (1 + t/c)^−a)``). Same roots as
    :func:`secular_roots_compiled`, without its ``B×K`` outputs.
    """
    w = np.ascontiguousarray(weights, dtype=np.float64)
    out = np.zeros(w.shape[0])
    if w.size:
        kind, sign, a, c = family
        _moved_sum_kernel(np.ascontiguousarray(poles, dtype=np.float64), w, int(kind), float(sign), float(a),
                          float(c), out)
    return out
