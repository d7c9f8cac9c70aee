"""CUDA kernels for the roots of the secular equation, compiled by CuPy on a GPU.

Why a kernel: the quadrature route needs, per candidate, only the root that leaves the zero eigenvalue cluster
while ``C`` is rank-deficient — one root, O(K) per iteration. The array-API solver
(:func:`worth.spectral.secular.secular_roots_portable`) would iterate all K roots of every candidate to read one, an
O(B·K²) step on the device. Here one thread solves one candidate's root with the algorithm of
:func:`worth.spectral.secular._solve_one` (midpoint start with the nearer pole as origin, the fixed-weight model,
bisection safeguard, trusted small steps), reading the weights in place (inactive poles are skipped, so no
per-thread scratch arrays). The same per-root function serves ``method="secular"`` on CuPy: one block per
candidate, one thread per root (:func:`secular_roots_cupy`), where the array-API solver would carry
``B×K×pole_block`` temporaries through every iteration.

The source is plain C inside ``#ifdef __CUDACC__`` wrappers, so the same function is also compiled by a host
C compiler in the tests (``tests/core/test_gpu_kernels.py``) and checked against the numba kernel where no GPU
is present; the GPU-marked test runs it through CuPy.
"""

from __future__ import annotations

ROOTS_SOURCE = r"""
#ifdef __CUDACC__
#define WORTH_FN __device__ static
#else
#include <math.h>
#define WORTH_FN static
#endif

#define WORTH_EPS 2.220446049250313e-16
#define WORTH_MAX_ITER 80
#define WORTH_TRUST 1e-7

/* Offset h solving c + s_l/(dl - h) + s_r/(dr - h) = 0 inside (dl, dr); for the last root
   c + s_l/(dl - h) = 0. Returns 0 when the model has no root there. */
WORTH_FN int worth_model_step(double c, double s_l, double s_r, double dl, double dr, int last, double* h) {
    if (last) {
        if (c > 0.0) { *h = dl + s_l / c; return 1; }
        return 0;
    }
    double b = c * (dl + dr) + s_l + s_r;
    double cc = c * dl * dr + s_l * dr + s_r * dl;
    if (c == 0.0) {
        if (b != 0.0) { *h = cc / b; return 1; }
        return 0;
    }
    double disc = b * b - 4.0 * c * cc;
    if (disc < 0.0) disc = 0.0;
    double qq = 0.5 * (b + copysign(sqrt(disc), b));
    double h1 = qq / c;
    if (dl < h1 && h1 < dr) { *h = h1; return 1; }
    if (qq != 0.0) {
        double h2 = cc / qq;
        if (dl < h2 && h2 < dr) { *h = h2; return 1; }
    }
    return 0;
}

/* Sums of w_j/((d_j - origin) - tau) over the active poles: those at or left of pole p, and the others. */
WORTH_FN void worth_sums(const double* d, const double* w, int K, int p, double origin, double tau,
                         double* psi, double* dpsi, double* phi, double* dphi) {
    double a = 0.0, da = 0.0, b = 0.0, db = 0.0;
    for (int j = 0; j < K; ++j) {
        if (!(w[j] > 0.0)) continue;
        double inv = 1.0 / ((d[j] - origin) - tau);
        double t = w[j] * inv;
        if (j <= p) { a += t; da += t * inv; }
        else { b += t; db += t * inv; }
    }
    *psi = a; *dpsi = da; *phi = b; *dphi = db;
}

/* The root belonging to active pole p (w[p] > 0): returns tau and writes its origin (a pole value);
   the root is origin + tau. An inactive pole does not move: origin d[p], tau 0. */
WORTH_FN double worth_root(const double* d, const double* w, int K, int p, double* origin_out) {
    *origin_out = d[p];
    if (!(w[p] > 0.0)) return 0.0;
    int r = -1, n_active = 0;
    double total = 0.0;
    for (int j = 0; j < K; ++j) {
        if (w[j] > 0.0) {
            n_active += 1;
            total += w[j];
            if (j > p && r < 0) r = j;
        }
    }
    int last = r < 0;
    double w_l = w[p], w_r = last ? 0.0 : w[r];
    double origin = d[p], lo, hi, dl, dr, tau, c0, h;
    double psi, dpsi, phi, dphi;
    if (last) {
        double mid = 0.5 * total;
        lo = 0.0; hi = total * (1.0 + 4.0 * WORTH_EPS);
        worth_sums(d, w, K, p, origin, mid, &psi, &dpsi, &phi, &dphi);
        c0 = 1.0 + (psi - w_l / (0.0 - mid));
        dl = 0.0; dr = 0.0;
        if (!worth_model_step(c0, w_l, 0.0, 0.0, 0.0, 1, &tau)) tau = -1.0;
    } else {
        double gap = d[r] - d[p], mid = 0.5 * gap;
        worth_sums(d, w, K, p, origin, mid, &psi, &dpsi, &phi, &dphi);
        c0 = 1.0 + (psi - w_l / (0.0 - mid)) + (phi - w_r / (gap - mid));
        if (1.0 + psi + phi >= 0.0) {
            lo = 0.0; hi = mid; dl = 0.0; dr = gap;
        } else {
            origin = d[r]; lo = -mid; hi = 0.0; dl = -gap; dr = 0.0;
        }
        if (!worth_model_step(c0, w_l, w_r, dl, dr, 0, &tau)) tau = lo - 1.0;
    }
    if (!(lo < tau && tau < hi)) tau = 0.5 * (lo + hi);
    for (int it = 0; it < WORTH_MAX_ITER; ++it) {
        worth_sums(d, w, K, p, origin, tau, &psi, &dpsi, &phi, &dphi);
        double f = 1.0 + psi + phi;
        if (f == 0.0) break;
        if (f < 0.0) lo = tau; else hi = tau;
        if (fabs(f) <= 8.0 * WORTH_EPS * (1.0 + n_active) * (1.0 - psi + phi)) break;
        double delta_l = dl - tau, s_l, s_r, c;
        int ok;
        if (last) {
            s_l = delta_l * delta_l * dpsi;
            c = 1.0 + psi - s_l / delta_l + phi;
            ok = worth_model_step(c, s_l, 0.0, delta_l, 0.0, 1, &h);
        } else {
            double delta_r = dr - tau, slope = dpsi + dphi;
            if (dl == 0.0) {
                s_l = w_l;
                s_r = fmax(slope - s_l / (delta_l * delta_l), 0.0) * delta_r * delta_r;
            } else {
                s_r = w_r;
                s_l = fmax(slope - s_r / (delta_r * delta_r), 0.0) * delta_l * delta_l;
            }
            c = f - s_l / delta_l - s_r / delta_r;
            ok = worth_model_step(c, s_l, s_r, delta_l, delta_r, 0, &h);
        }
        double nw = ok ? tau + h : lo - 1.0;
        if (!(lo < nw && nw < hi)) {
            nw = 0.5 * (lo + hi);
        } else if (fabs(h) <= WORTH_TRUST * fabs(nw)) {
            tau = nw;
            break;
        }
        if (fabs(nw - tau) <= 2.0 * WORTH_EPS * fmax(fabs(tau), fabs(nw)) ||
            hi - lo <= 2.0 * WORTH_EPS * fmax(fabs(lo), fabs(hi))) {
            tau = nw;
            break;
        }
        tau = nw;
    }
    *origin_out = origin;
    return tau;
}

/* The root leaving the zero cluster (pole d[0] = 0 with weight w[0]); 0 when w[0] <= 0. */
WORTH_FN double worth_zero_root(const double* d, const double* w, int K) {
    if (!(w[0] > 0.0)) return 0.0;
    double origin;
    double tau = worth_root(d, w, K, 0, &origin);
    return origin + tau;
}

#ifdef __CUDACC__
extern "C" __global__ void worth_zero_root_kernel(const double* d, const double* W, int B, int K, double* out) {
    int b = blockDim.x * blockIdx.x + threadIdx.x;
    if (b < B) out[b] = worth_zero_root(d, W + (long long)b * K, K);
}

/* Every root of every candidate: one block per candidate, its threads stride over the poles. */
extern "C" __global__ void worth_roots_kernel(const double* d, const double* W, int B, int K,
                                              double* origins, double* taus) {
    int b = blockIdx.x;
    if (b >= B) return;
    const double* w = W + (long long)b * K;
    for (int p = threadIdx.x; p < K; p += blockDim.x) {
        double origin;
        double tau = worth_root(d, w, K, p, &origin);
        origins[(long long)b * K + p] = origin;
        taus[(long long)b * K + p] = tau;
    }
}
#else
void worth_zero_root_batch(const double* d, const double* W, int B, int K, double* out) {
    for (int b = 0; b < B; ++b) out[b] = worth_zero_root(d, W + (long)b * K, K);
}

void worth_roots_batch(const double* d, const double* W, int B, int K, double* origins, double* taus) {
    for (int b = 0; b < B; ++b)
        for (int p = 0; p < K; ++p)
            taus[(long)b * K + p] = worth_root(d, W + (long)b * K, K, p, origins + (long)b * K + p);
}
#endif
"""

_KERNELS: dict = {}


def _kernel(name: str):
    import cupy

    if name not in _KERNELS:
        _KERNELS[name] = cupy.RawKernel(ROOTS_SOURCE, name)
    return _KERNELS[name]


def zero_root_cupy(poles, weights):
    """The zero-cluster root of every candidate (CuPy arrays in and out), one GPU thread per candidate."""
    import cupy

    W = cupy.ascontiguousarray(weights, dtype=cupy.float64)
    d = cupy.ascontiguousarray(poles, dtype=cupy.float64)
    B, K = W.shape
    out = cupy.zeros(B, dtype=cupy.float64)
    if B:
        threads = 128
        _kernel("worth_zero_root_kernel")(((B + threads - 1) // threads,), (threads,),
                                          (d, W, cupy.int32(B), cupy.int32(K), out))
    return out


def secular_roots_cupy(poles, weights):
    """Every root of every candidate (CuPy arrays): ``(origins, taus)`` as :func:`worth.spectral.secular.secular_roots_compiled`.

    One block per candidate; each thread solves the roots of the poles it strides over, O(K) per iteration
    and no ``B×K×K`` temporaries.
    """
    import cupy

    W = cupy.ascontiguousarray(weights, dtype=cupy.float64)
    d = cupy.ascontiguousarray(poles, dtype=cupy.float64)
    B, K = W.shape
    origins = cupy.empty((B, K), dtype=cupy.float64)
    taus = cupy.empty((B, K), dtype=cupy.float64)
    if B:
        _kernel("worth_roots_kernel")((B,), (min(128, max(32, K)),),
                                      (d, W, cupy.int32(B), cupy.int32(K), origins, taus))
    return origins, taus
