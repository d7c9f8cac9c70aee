"""worth against apricot and submodlib: facility location and log-det, side by side in one run.

Same data for everyone: a Gaussian mixture (20 components), rows L2-normalised, n ∈ {20,000, 100,000},
m ∈ {64, 256}, k = 1,000. Imports happen before the clock starts (for every method; their time is the
``import s`` column). Each run is a fresh subprocess (so peak RSS is its own: ``ru_maxrss``), under a
wall-clock limit and an address-space limit (a peer that needs the n×n matrix fails fast instead of taking
the machine down). Objective values are recomputed here by ``worth.score`` on each run's picks, so every
facility-location row is the *dense* objective ``Σ_i max_{j∈S} max(0, cos)`` (the kNN row included) and every
log-det row is ``log det(I + K_S)``; the ratio columns are against apricot (facility location) and submodlib
(log-det; apricot has none).

The ``floor-*`` rows select nothing: they time one pass of GEMMs over every pair (float32 through OpenBLAS,
bfloat16 through torch), the least an exact dense facility location within a fraction of the n×n matrix's
memory must compute before its first pick. Their speed-up column is the most any such method could show
against apricot on this machine.

    python bench/peers.py --quick        # n = 20,000, m = 64 only
    python bench/peers.py                # the whole grid (about 25 minutes on 2 cores)
    python bench/peers.py --large-worth-only   # the grid, but at n = 100,000 only worth's rows
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

K = 1000
NEIGHBORS = 100


def mixture(n: int, m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, m))
    X = centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, m))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def gram(X: np.ndarray) -> np.ndarray:
    """``X Xᵀ`` through GEMM against a copy of ``Xᵀ``.

    ``X @ X.T`` is sent to SYRK, which in the OpenBLAS of the numpy wheel here (0.3.31, 2 threads) dies with
    SIGSEGV at n = 20,000, m = 256 (reproduced outside this script; fine with one thread). It was why the
    peers "failed: signal 11" at m = 256 in earlier runs.
    """
    return X @ np.ascontiguousarray(X.T)


def floor(X: np.ndarray, method: str) -> None:
    """Every pair's inner product once, nothing else: GEMMs of 256-row blocks against ``Xᵀ`` on all cores.

    A lower bound for any exact dense facility location that does not hold the n×n matrix (1.6 GB at
    n = 20,000 in float32): its first pick needs every column's sum, so it computes every pair at least once.
    ``floor-fp32`` is that pass in float32 (OpenBLAS, as worth and the peers use); ``floor-bf16`` is torch's
    bfloat16 GEMM (oneDNN), which only an engine that certifies bounds from rounded similarities could use.
    """
    block = 256
    if method == "floor-bf16":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        A = torch.from_numpy(X.astype(np.float32)).to(torch.bfloat16)
        AT, out, mm = A.T.contiguous(), torch.empty((block, X.shape[0]), dtype=torch.bfloat16), torch.mm
    else:
        A = X.astype(np.float32)
        AT, out, mm = np.ascontiguousarray(A.T), np.empty((block, X.shape[0]), dtype=np.float32), np.matmul
    for a in range(0, X.shape[0], block):
        b = min(a + block, X.shape[0])
        mm(A[a:b], AT, out=out[:b - a])


# -- one run, in its own process ----------------------------------------------------------------------

def worker(method: str, n: int, m: int) -> dict:
    X = mixture(n, m)
    # Imports happen before the clock starts, for every method: the table times the selection, not Python's
    # import machinery (importing worth, apricot or submodlib takes 0.5–2 s; it is printed separately).
    t_import = time.perf_counter()
    if method.startswith("worth"):
        import worth
    elif method == "floor-bf16":
        import torch
    elif method.startswith("floor"):
        pass
    elif method.startswith("apricot"):
        from apricot import FacilityLocationSelection
    else:
        from submodlib import FacilityLocationFunction, LogDeterminantFunction
    t_import = time.perf_counter() - t_import
    t0 = time.perf_counter()
    if method.startswith("worth"):
        if method == "worth-fl-dense":
            sel = worth.select(X, K, "facility-location", "lazy", precision="float32")
        elif method == "worth-fl-knn":
            sel = worth.select(X, K, "facility-location", "lazy", neighbors=NEIGHBORS)
        else:
            sel = worth.select(X, K, "logdet", "lazy")
        idx = np.asarray(sel.indices).tolist()
    elif method.startswith("floor"):
        floor(X, method)
        idx = None
    elif method == "apricot-fl":
        S = gram(X)
        np.maximum(S, 0, out=S)
        idx = FacilityLocationSelection(K, metric="precomputed", optimizer="lazy").fit(S).ranking.tolist()
    elif method == "submodlib-fl":
        S = gram(X).astype(np.float32)
        np.maximum(S, 0, out=S)
        f = FacilityLocationFunction(n=n, mode="dense", sijs=S, separate_rep=False)
        idx = [j for j, _ in f.maximize(budget=K, optimizer="LazyGreedy", stopIfZeroGain=False,
                                        stopIfNegativeGain=False, show_progress=False)]
    elif method == "submodlib-logdet":
        f = LogDeterminantFunction(n=n, mode="dense", data=X.astype(np.float32), metric="cosine", lambdaVal=1.0)
        idx = [j for j, _ in f.maximize(budget=K, optimizer="LazyGreedy", stopIfZeroGain=False,
                                        stopIfNegativeGain=False, show_progress=False)]
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"seconds": seconds, "rss": rss, "indices": idx, "import": t_import}


def run(method: str, n: int, m: int, timeout: float, mem_gb: float) -> dict:
    """Run one method in a subprocess; what it returned, or why it did not."""
    def limit():
        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    cmd = [sys.executable, __file__, "--worker", method, str(n), str(m)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return {"status": f"stopped at {timeout:.0f} s"}
    if proc.returncode != 0:
        # A negative return code is a signal (a C extension that hits the address-space limit may crash
        # with SIGSEGV/SIGABRT instead of raising MemoryError).
        fallback = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        tail = (proc.stderr.strip().splitlines() or [fallback])[-1]
        why = "out of memory" if "MemoryError" in proc.stderr or "bad_alloc" in proc.stderr \
            or "Unable to allocate" in proc.stderr else tail[:60]
        return {"status": f"failed: {why} ({time.perf_counter() - t0:.0f} s)"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["status"] = "ok"
    return out


def value(method: str, n: int, m: int, idx) -> float:
    import worth

    X = mixture(n, m)
    objective = "logdet" if "logdet" in method else "facility-location"
    return worth.score(X, np.asarray(idx, dtype=np.int64), objective)


METHODS_FL = ["worth-fl-dense", "worth-fl-knn", "apricot-fl", "submodlib-fl", "floor-fp32", "floor-bf16"]
METHODS_LD = ["worth-logdet", "submodlib-logdet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 20,000 and m = 64 only")
    ap.add_argument("--timeout", type=float, default=240, help="wall-clock limit per run, seconds")
    ap.add_argument("--mem-gb", type=float, default=16, help="address-space limit per run, GiB")
    ap.add_argument("--large-worth-only", action="store_true",
                    help="at n = 100,000 run worth only (the peers' n×n matrices take most of the grid's time)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        method, n, m = args.worker
        print(json.dumps(worker(method, int(n), int(m))))
        return
    grid = [(20_000, 64)] if args.quick else [(20_000, 64), (20_000, 256), (100_000, 64), (100_000, 256)]
    print(f"k={K}, kNN K={NEIGHBORS}, limits: {args.timeout:.0f} s and {args.mem_gb:g} GiB per run, "
          f"{os.cpu_count()} CPUs\n")
    header = f"{'n':>7} {'m':>4}  {'method':<17} {'time s':>8} {'import s':>8} {'peak RSS':>9} {'value':>12}  " \
             f"{'speed-up':>8} {'value ratio':>11}  status"
    print(header)
    print("-" * len(header))
    for n, m in grid:
        for group, ref in ((METHODS_FL, "apricot-fl"), (METHODS_LD, "submodlib-logdet")):
            results = {}
            for method in group:
                if args.large_worth_only and n > 20_000 and not method.startswith(("worth", "floor")):
                    results[method] = {"status": "skipped (--large-worth-only)"}
                    continue
                r = run(method, n, m, args.timeout, args.mem_gb)
                if r["status"] == "ok" and r["indices"] is not None:
                    r["value"] = value(method, n, m, r["indices"])
                results[method] = r
            base = results.get(ref, {})
            for method in group:
                r = results[method]
                if r["status"] != "ok":
                    print(f"{n:>7} {m:>4}  {method:<17} {'-':>8} {'-':>8} {'-':>9} {'-':>12}  {'-':>8} {'-':>11}  "
                          f"{r['status']}")
                    continue
                if base.get("status") == "ok":
                    speed = f"{base['seconds'] / r['seconds']:.1f}x"
                    ratio = f"{r['value'] / base['value']:.5f}" if "value" in r else "n/a"
                else:
                    stopped = base.get("status", "").startswith("stopped")
                    speed = f">{args.timeout / r['seconds']:.1f}x" if stopped else "n/a"
                    ratio = "n/a"
                val = f"{r['value']:>12.2f}" if "value" in r else f"{'-':>12}"
                print(f"{n:>7} {m:>4}  {method:<17} {r['seconds']:>8.2f} {r['import']:>8.2f} {r['rss'] / 2**30:>7.2f}GB "
                      f"{val}  {speed:>8} {ratio:>11}  ok", flush=True)


if __name__ == "__main__":
    main()
