"""Marginal-gain benchmark: every exact method against the oracle, measured side by side in one run.

Part 1 — per-candidate gain time at m ∈ {64, 128, 256, 512} on a full-rank state (|S| = m + 16 rows, so
r = m: the hard, O(r²)-per-root regime), one core (BLAS and numba pinned to one thread), with the
speedup over the oracle (``eigvalsh(C + x xᵀ)`` per candidate).

Part 2 — a whole greedy run (Vendi, n=5,000, k=300, m=128, past the rank-deficient phase): the secular
path timed end to end; the oracle timed on sampled steps and extrapolated (a full oracle run takes
hours), and its picks compared with the secular ones on a prefix.

    python bench/gains.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import worth
from worth.gains import SpectralState
from worth.objectives import get_objective


def unit_rows(n, m, seed):
    X = np.random.default_rng(seed).normal(size=(n, m))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def per_candidate(state, cand, min_seconds):
    """Seconds per candidate: repeat the batched call until ``min_seconds`` have passed."""
    state.gains(cand[:2])  # warm-up (numba compile, caches)
    reps, t0 = 0, time.perf_counter()
    while True:
        state.gains(cand)
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / (reps * len(cand))


def part1(ms, min_seconds):
    rows = []
    for m in ms:
        X = unit_rows(4 * m + 2000, m, seed=m)
        base = np.arange(m + 16)
        cand = np.arange(m + 16, X.shape[0])
        for name, methods in [("vendi", ["oracle", "secular", "secular-portable"]),
                              ("power", ["oracle", "secular"]),
                              ("logdet", ["oracle", "secular", "closed-form"])]:
            obj = get_objective(name)
            times = {}
            for meth in methods:
                st = SpectralState(X, obj, meth, np, batch_size=256)
                st.start_from(base)
                n_c = {"oracle": max(4, 4096 // m), "secular-portable": 256}.get(meth, len(cand))
                times[meth] = per_candidate(st, cand[:n_c], min_seconds)
            for meth, t in times.items():
                rows.append((m, name, meth, t * 1e6, times["oracle"] / t))
    print("\nPer-candidate marginal gain (one core, |S| = m + 16, r = m)")
    print(f"{'m':>5} {'objective':<8} {'method':<17} {'µs/candidate':>13} {'× oracle':>10}")
    for m, name, meth, us, ratio in rows:
        print(f"{m:>5} {name:<8} {meth:<17} {us:>13.2f} {ratio:>10.1f}")
    return rows


def part2(n, k, m, oracle_steps):
    X = unit_rows(n, m, seed=1)
    t0 = time.perf_counter()
    sel = worth.select(X, k, "vendi", method="secular")
    secular_s = time.perf_counter() - t0
    picks = np.asarray(sel.indices)
    # Oracle: time full steps at a few set sizes along the secular trajectory, extrapolate over all k.
    obj = get_objective("vendi")
    per_cand = []
    for size in np.linspace(0, k - 1, oracle_steps).astype(int):
        st = SpectralState(X, obj, "oracle", np, batch_size=64)
        st.start_from(picks[:size])
        remaining = np.setdiff1d(np.arange(n), picks[:size])[:256]
        per_cand.append(per_candidate(st, remaining, 0.5))
    oracle_est = float(np.mean(per_cand)) * sum(n - s for s in range(k))
    # Picks: full oracle greedy on a prefix of steps equals the secular prefix.
    prefix = 3
    ref = worth.select(X, prefix, "vendi", method="oracle")
    same = np.array_equal(np.asarray(ref.indices), picks[:prefix])
    print(f"\nWhole greedy: Vendi, n={n}, k={k}, m={m} (one core)")
    print(f"{'method':<10} {'seconds':>12} {'× oracle':>10}")
    print(f"{'oracle':<10} {oracle_est:>12.0f} {'1.0':>10}   (extrapolated from {oracle_steps} sampled steps)")
    print(f"{'secular':<10} {secular_s:>12.1f} {oracle_est / secular_s:>10.1f}")
    print(f"first {prefix} picks identical to the full oracle greedy: {same}; "
          f"Vendi of the selection {sel.value:.4f}, score() {worth.score(X, picks, 'vendi'):.4f}")
    return same


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args()
    numba.set_num_threads(1)
    with threadpool_limits(1):
        if args.quick:
            part1([64, 128], 0.2)
            part2(1000, 60, 64, 3)
        else:
            part1([64, 128, 256, 512], 1.0)
            part2(5000, 300, 128, 5)


if __name__ == "__main__":
    main()
