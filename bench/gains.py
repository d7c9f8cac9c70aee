"""Marginal-gain benchmark: every method against the oracle, measured side by side in one run.

Part 1 — per-candidate gain time at m ∈ {64, 128, 256, 512} on a full-rank state (|S| = m + 16 rows, so
r = m: the hard, O(r²)-per-root regime), one core (BLAS and numba pinned to one thread), with the
speedup over the oracle (``eigvalsh(C + x xᵀ)`` per candidate). ``sherman-morrison`` is amortised: one
rank-one update of the whole table plus the gains of all candidates, divided by the number of candidates.

Part 2 — whole greedy runs: the fast path timed end to end; the oracle timed on sampled steps and
extrapolated to the queries of a full naive greedy (a full oracle run takes hours to weeks), and the picks
compared with the exact secular path on a prefix. Greedy on the Vendi Score over unit rows evaluates lazily
on the entropy key (``worth.spectral.statkey``: the same picks as naive greedy, tested), so its ratio counts both the
cheaper gains and the fewer evaluations; ``evaluations`` in the diagnostics says how many.

Part 3 — the eigenpairs after a pick: a fresh ``eigh`` against the rank-one update of ``worth.spectral.eigupdate``,
per step, with the orthogonality drift after all the updates *without* the periodic ``eigh`` refresh the
greedy state adds (every 32 updates).

Part 4 — defaults: greedy (lazy wherever exact) against explicit lazy on power, n = 100,000, m = 512,
k = 600; and Vendi n = 100,000, m = 128, k = 2,000 with one BLAS thread per pick (the default) against BLAS
on every core and ``threads=1``.

    python bench/gains.py [--quick] [--skip-large] [--defaults-only [--n N]]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import worth
from worth.spectral.state import SpectralState
from worth.registry import get_objective


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


def sm_per_candidate(state, cand, min_seconds):
    """Amortised Sherman–Morrison cost: (table update + gains of every candidate) / candidates."""
    reps, t0 = 0, time.perf_counter()
    v = state.X[cand[0]]
    while True:
        saved = state.gain.table.copy()
        t1 = time.perf_counter()
        state.gain.sherman_morrison(v)
        state.gains(cand)
        reps += 1
        state.gain.table = saved
        if time.perf_counter() - t0 >= min_seconds:
            return (time.perf_counter() - t0 - 0.0) / (reps * len(cand)) if reps else t1


def part1(ms, min_seconds):
    rows = []
    for m in ms:
        X = unit_rows(4 * m + 2000, m, seed=m)
        base = np.arange(m + 16)
        cand = np.arange(m + 16, X.shape[0])
        for name, methods in [("vendi", ["oracle", "secular", "secular-portable", "quadrature", "sherman-morrison"]),
                              ("power", ["oracle", "secular", "quadrature", "sherman-morrison"]),
                              ("logdet", ["oracle", "secular", "closed-form"])]:
            obj = get_objective(name)
            times = {}
            for meth in methods:
                st = SpectralState(X, obj, meth, np, batch_size=4096)
                st.start_from(base)
                if meth in ("quadrature", "sherman-morrison"):
                    st.gain.update_rule()
                if meth == "sherman-morrison":
                    times[meth] = sm_per_candidate(st, cand, min_seconds)
                    continue
                n_c = {"oracle": max(4, 4096 // m), "secular-portable": 256}.get(meth, len(cand))
                times[meth] = per_candidate(st, cand[:n_c], min_seconds)
            for meth, t in times.items():
                rows.append((m, name, meth, t * 1e6, times["oracle"] / t))
    print("\nPer-candidate marginal gain (one core, |S| = m + 16, r = m)")
    print(f"{'m':>5} {'objective':<8} {'method':<17} {'µs/candidate':>13} {'× oracle':>10}")
    for m, name, meth, us, ratio in rows:
        print(f"{m:>5} {name:<8} {meth:<17} {us:>13.3f} {ratio:>10.1f}")
    return rows


def oracle_seconds(X, name, picks, k, samples, **params):
    """Seconds a naive oracle greedy would take: per-query time at sampled set sizes × its query count."""
    n = X.shape[0]
    obj = get_objective(name, **params)
    per_cand = []
    for size in np.linspace(0, k - 1, samples).astype(int):
        st = SpectralState(X, obj, "oracle", np, batch_size=64)
        st.start_from(picks[:size])
        remaining = np.setdiff1d(np.arange(n), picks[:size])[:128]
        per_cand.append(per_candidate(st, remaining, 0.3))
    queries = sum(n - s for s in range(k))
    return float(np.mean(per_cand)) * queries, queries


def part2(label, n, k, m, name, methods, optimizer="greedy", prefix=3, prefix_method="secular", samples=4, **params):
    X = unit_rows(n, m, seed=1)
    runs = {}
    for meth in methods:
        t0 = time.perf_counter()
        runs[meth] = (worth.select(X, k, name, optimizer, method=meth, **params), time.perf_counter() - t0)
    first = runs[methods[0]][0]
    picks = np.asarray(first.indices)
    oracle_est, queries = oracle_seconds(X, name, picks, k, samples, **params)
    ref = worth.select(X, prefix, name, optimizer, method=prefix_method, **params)
    print(f"\nWhole run {label}: {name}{params or ''}, n={n:,}, k={k:,}, m={m}, optimizer={optimizer} (one core)")
    print(f"{'method':<17} {'seconds':>10} {'× oracle':>10} {'µs/query amortised':>19}  diagnostics")
    print(f"{'oracle (naive)':<17} {oracle_est:>10.0f} {'1':>10} {oracle_est / queries * 1e6:>19.3f}  "
          f"extrapolated from {samples} sampled set sizes, {queries:,} queries")
    for meth, (sel, secs) in runs.items():
        diag = {k_: (float(f"{v:.3g}") if isinstance(v, float) else v) for k_, v in sel.diagnostics.items()}
        diag["update_s"] = round(sel.timings["update"], 1)
        diag["evaluations"] = sel.timings["evaluations"]
        diag["evaluation"] = sel.info["evaluation"]
        print(f"{meth:<17} {secs:>10.1f} {oracle_est / secs:>10.0f} {secs / queries * 1e6:>19.3f}  {diag}")
    same_all = all(np.array_equal(np.asarray(sel.indices), picks) for sel, _ in runs.values())
    same_prefix = np.array_equal(np.asarray(ref.indices), picks[:prefix])
    print(f"picks identical across {list(runs)}: {same_all}; first {prefix} identical to {prefix_method}: "
          f"{same_prefix}; value {first.value:.6f} (score() {worth.score(X, picks, name, **params):.6f})")


def part3(ms, steps):
    """Eigenpairs after each pick: ``eigh`` of C against the rank-one update, per step, with the drift."""
    from worth.spectral.eigupdate import rank_one_update

    print(f"\nEigenpairs after a pick (one core, {steps} picks from |S| = m, unit rows)")
    print(f"{'m':>5} {'eigh ms/step':>13} {'update ms/step':>15} {'× eigh':>7} {'max|UᵀU−I| (no refresh)':>25} "
          f"{'max |Δλ|/λmax':>14}")
    for m in ms:
        X = unit_rows(m + steps, m, seed=7)
        C = X[:m].T @ X[:m]
        lam, U = np.linalg.eigh(C)
        t_eigh = t_upd = 0.0
        for x in X[m:]:
            t0 = time.perf_counter()
            lam, U = rank_one_update(lam, U, x)
            t_upd += time.perf_counter() - t0
            C += np.outer(x, x)
            t0 = time.perf_counter()
            ref = np.linalg.eigh(C)[0]
            t_eigh += time.perf_counter() - t0
        drift = float(np.max(np.abs(U.T @ U - np.eye(U.shape[1]))))
        err = float(np.max(np.abs(lam - ref)) / ref[-1])
        print(f"{m:>5} {t_eigh / steps * 1e3:>13.2f} {t_upd / steps * 1e3:>15.2f} {t_eigh / t_upd:>7.1f} "
              f"{drift:>25.1e} {err:>14.1e}")


def part4(n_power, n_vendi):
    """Default greedy (lazy wherever exact) against explicit lazy, and the BLAS thread count per pick.

    Issue 11: power, n = 100,000, m = 512, k = 600, unit rows — default greedy evaluated every candidate at
    every step (still running after 12 minutes) where ``optimizer="lazy"`` took about 20 s; the default must
    now be within 1.2× of lazy with the same picks. Vendi, n = 100,000, m = 128, k = 2,000: the default
    threads (BLAS on one thread per pick, :mod:`worth.threads`) against BLAS left on every core
    (``blas_every_core``: the pick phase re-opened to all cores) and ``threads=1`` (numba too). Runs on the
    machine's own thread counts (not the one-core pin of parts 1–3).
    """
    import contextlib
    import os

    from worth import api as worth_api
    from worth import threads as worth_threads

    cores = len(os.sched_getaffinity(0))
    print(f"\nDefault greedy against explicit lazy (power, n={n_power:,}, m=512, k=600, unit rows; {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f})")
    X = unit_rows(n_power, 512, seed=1)
    runs = {}
    for label, optimizer in [("greedy (default)", "greedy"), ("lazy (explicit)", "lazy")]:
        t0 = time.perf_counter()
        runs[label] = (worth.select(X, 600, "power", optimizer), time.perf_counter() - t0)
    for label, (sel, secs) in runs.items():
        print(f"{label:<18} {secs:>8.1f} s  method={sel.method} evaluation={sel.info['evaluation']} "
              f"evaluations={sel.timings['evaluations']:,}")
    (g, tg), (lz, tl) = runs.values()
    print(f"default / lazy: {tg / tl:.2f}x; picks identical: {np.array_equal(g.indices, lz.indices)}")

    print(f"\nBLAS threads per pick (vendi, n={n_vendi:,}, m=128, k=2,000, unit rows, default greedy; load "
          f"average {os.getloadavg()[0]:.1f})")
    X = unit_rows(n_vendi, 128, seed=2)
    settings = {"default (1 BLAS thread per pick)": None, "BLAS on every core (before)": "every", "threads=1": 1}
    out = {}
    for label, threads in settings.items():
        if threads == "every":  # the behaviour before worth.threads: the pick phase leaves BLAS as it is
            worth_api.pick_phase = contextlib.nullcontext
        try:
            t0 = time.perf_counter()
            sel = worth.select(X, 2000, "vendi", threads=None if threads == "every" else threads)
            out[label] = (sel, time.perf_counter() - t0)
        finally:
            worth_api.pick_phase = worth_threads.pick_phase
    ref = next(iter(out.values()))[0]
    for label, (sel, secs) in out.items():
        print(f"{label:<34} {secs:>8.1f} s  evaluation={sel.info['evaluation']} "
              f"same picks: {np.array_equal(sel.indices, ref.indices)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, about a minute)")
    ap.add_argument("--skip-large", action="store_true", help="skip the n=100,000 runs")
    ap.add_argument("--defaults-only", action="store_true",
                    help="only part 4 (default greedy against lazy; BLAS threads per pick)")
    ap.add_argument("--n", type=int, default=100_000, help="pool size of part 4 (default 100,000)")
    args = ap.parse_args()
    if args.defaults_only:
        part4(args.n, args.n)
        return
    numba.set_num_threads(1)
    with threadpool_limits(1):
        if args.quick:
            part1([64, 128], 0.2)
            part2("(smoke)", 2000, 100, 64, "vendi", ["auto", "secular"], samples=2)
            part3([64, 128], 50)
            return
        part1([64, 128, 256, 512], 1.0)
        part2("(issue 2)", 5000, 300, 128, "vendi", ["secular", "auto"], samples=5)
        part3([128, 256, 512], 200)
        if not args.skip_large:
            # Greedy on the Vendi Score over unit rows runs lazily on the entropy key (exact: worth.spectral.statkey),
            # so auto evaluates with the projected quadrature.
            part2("(a)", 100_000, 2000, 128, "vendi", ["auto"], prefix=5, samples=4)
            # power is submodular, so lazy greedy gives greedy's picks (tested); auto runs it on quadrature.
            part2("(b)", 100_000, 600, 512, "power", ["quadrature"], optimizer="lazy", prefix=4, samples=3)
    if not args.quick and not args.skip_large:
        part4(100_000, 100_000)  # outside the one-core pin: thread counts are what it measures


if __name__ == "__main__":
    main()
