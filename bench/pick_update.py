"""The per-pick state update of a spectral greedy step against its floor, one m×m×m GEMM (issue 19).

A pick's update rotates the eigenvectors of the m×m state, ``U ← U V``: one m×K×K product, the floor. This
script measures, side by side in one run:

Part 1 — per-pick update (``worth.spectral.eigupdate.rank_one_update`` on a full-rank state, each update
feeding the next) for m = 128, 256, 512: the old path (``--old``, a git revision, extracted to a temporary
folder and imported from there in a subprocess) and the new one on 1 core (``threads=1``: numba and the
rotation on one thread) and on every core (the default, as ``worth.select`` runs it), against the GEMM
floor: one m×m×m float64 ``matmul`` with BLAS on 1 and on 2 threads (threadpoolctl), and the row-split
product the update uses (:func:`worth.threads.matmul_rows`, 2 threads of single-threaded BLAS).

Part 2 — a stochastic-greedy row (Vendi, ε = 0.01) through ``worth.select``: old against new wall time and
update time, the picks asserted equal.

Run it alone on a quiet machine; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some processors here) slow a
current NumPy, so unset both in that command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/pick_update.py

The kernel threadpoolctl reports is printed first. ``--tiny`` runs every part at toy sizes (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "833489d"  # the last commit before the per-pick rewrite of issue 19


# -- worker side (runs in a subprocess with PYTHONPATH set to the tree under test) ----------------------
def _unit_rows(n: int, m: int, seed: int) -> np.ndarray:
    """Unit rows with a decaying spectrum (an embedding's, not white noise): 40 % of the energy in m/16 axes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m)) * (1.0 + 4.0 * (np.arange(m) < max(1, m // 16)))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _update_times(m: int, steps: int, threads: int | None) -> dict:
    """Median and best seconds of one update on a full-rank state (2m rows in), ``steps`` updates chained."""
    from worth.spectral.eigupdate import rank_one_update
    from worth.threads import blas_threads, run_threads

    X = _unit_rows(2 * m + steps + 4, m, seed=m)
    C = X[:2 * m].T @ X[:2 * m]
    lam0, U0 = np.linalg.eigh(C)
    rank_one_update(lam0, U0, X[-1])  # compile / load the cached kernels
    try:
        rank_one_update(lam0, U0, X[-1], out=np.empty_like(U0))
        has_out = True
    except TypeError:  # the old path has no out=
        has_out = False
    lam, U, spare = lam0, U0.copy(), np.empty_like(U0)
    times = []
    with run_threads(threads), blas_threads(1):
        for x in X[2 * m:2 * m + steps]:
            t0 = time.perf_counter()
            new_lam, new_U = rank_one_update(lam, U, x, out=spare) if has_out else rank_one_update(lam, U, x)
            times.append(time.perf_counter() - t0)
            spare, lam, U = U, new_lam, new_U
    drift = float(np.max(np.abs(U.T @ U - np.eye(U.shape[1]))))
    return {"median": float(np.median(times)), "best": float(np.min(times)), "drift": drift}


def _stochastic(n: int, m: int, k: int) -> dict:
    import worth
    from worth.threads import blas_threads

    X = _unit_rows(n, m, seed=7).astype(np.float32)
    with blas_threads(1):
        worth.select(X[:min(n, 4 * m)], k=min(8, m), objective="vendi", optimizer="stochastic", seed=0)  # compile
    t0 = time.perf_counter()
    sel = worth.select(X, k=k, objective="vendi", optimizer="stochastic", epsilon=0.01, seed=0)
    wall = time.perf_counter() - t0
    return {"wall": wall, "update": float(sel.timings["update"]), "gains": float(sel.timings["gains"]),
            "indices": np.asarray(sel.indices).tolist(), "value": float(np.asarray(sel.values)[-1]),
            "method": sel.method}


def worker(args) -> None:
    out: dict = {}
    if args.part == "update":
        for m in args.sizes:
            out[str(m)] = {"t1": _update_times(m, args.steps, 1), "all": _update_times(m, args.steps, None)}
    else:
        out = _stochastic(args.n, args.m, args.k)
    print(json.dumps(out))


# -- driver side ----------------------------------------------------------------------------------------
def _gemm_floor(m: int, repeat: int) -> dict:
    """The GEMM floor: one m×m×m float64 product, BLAS on 1 and 2 threads, and the row-split product.

    The row split is timed first and each setting after a pause: OpenBLAS's threads spin for a while after a
    2-thread call, and a spinning thread holds the core the split's second thread needs (timed right after
    the 2-thread BLAS calls, the split read as slow as one thread).
    """
    from threadpoolctl import threadpool_limits

    from worth.threads import blas_threads, matmul_rows

    rng = np.random.default_rng(0)
    A, B, O = rng.normal(size=(m, m)), rng.normal(size=(m, m)), np.empty((m, m))
    res = {}
    with blas_threads(1):
        matmul_rows(A, B, O, threads=2)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            matmul_rows(A, B, O, threads=2)
            ts.append(time.perf_counter() - t0)
    res["split2"] = float(np.median(ts))
    for t in (1, 2):
        time.sleep(0.5)
        with threadpool_limits(limits=t, user_api="blas"):
            np.matmul(A, B, out=O)
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                np.matmul(A, B, out=O)
                ts.append(time.perf_counter() - t0)
        res[f"blas{t}"] = float(np.median(ts))
    time.sleep(0.5)
    return res


def _extract(rev: str, into: Path) -> Path:
    """``worth/`` of revision ``rev`` under ``into`` (git archive: the committed tree, nothing else)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "worth"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _run_worker(tree: Path, extra: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *extra], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(tree))
    if proc.returncode:
        raise RuntimeError(f"worker in {tree} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", default=OLD_REV, help="git revision of the old path (default: %(default)s)")
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[128, 256, 512])
    ap.add_argument("--steps", type=int, default=40, help="updates timed per size")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--k", type=int, default=3_000)
    ap.add_argument("--tiny", action="store_true", help="toy sizes: the smoke test")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--part", default="update", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.tiny:
        args.sizes, args.steps, args.n, args.m, args.k = [16, 48], 4, 600, 24, 40

    from threadpoolctl import threadpool_info

    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()
            if i.get("user_api") == "blas"]
    print(f"BLAS (threadpoolctl): {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')!r}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        old = _extract(args.old, Path(tmp))
        sizes = ",".join(map(str, args.sizes))
        upd_extra = ["--part", "update", "--sizes", sizes, "--steps", str(args.steps)]
        old_u = _run_worker(old, upd_extra, args.timeout)
        new_u = _run_worker(ROOT, upd_extra, args.timeout)
        print(f"\nPart 1: per-pick update on a full-rank state (median of {args.steps}; ms), against one m×m×m GEMM")
        head = (f"{'m':>5} {'old 1c':>8} {'old 2c':>8} {'new 1c':>8} {'new 2c':>8} {'GEMM b1':>8} {'GEMM b2':>8} "
                f"{'split2':>8} {'old/new':>8} {'new1c/b1':>9} {'new2c/min':>9} {'drift':>8}")
        print(head)
        for m in args.sizes:
            f = _gemm_floor(m, max(10, args.steps))
            o, n = old_u[str(m)], new_u[str(m)]
            floor2 = min(f["blas2"], f["split2"], f["blas1"])
            print(f"{m:>5} {1e3 * o['t1']['median']:8.3f} {1e3 * o['all']['median']:8.3f} "
                  f"{1e3 * n['t1']['median']:8.3f} {1e3 * n['all']['median']:8.3f} {1e3 * f['blas1']:8.3f} "
                  f"{1e3 * f['blas2']:8.3f} {1e3 * f['split2']:8.3f} "
                  f"{o['all']['median'] / n['all']['median']:8.2f} {n['t1']['median'] / f['blas1']:9.2f} "
                  f"{n['all']['median'] / floor2:9.2f} {n['all']['drift']:8.1e}")
        print("  old/new: the default (all cores) paths; new1c/b1: new on 1 core over the 1-thread GEMM; "
              "new2c/min: new on all cores over the fastest GEMM.")
        st_extra = ["--part", "stochastic", "--n", str(args.n), "--m", str(args.m), "--k", str(args.k)]
        old_s = _run_worker(old, st_extra, args.timeout)
        new_s = _run_worker(ROOT, st_extra, args.timeout)
    same = old_s["indices"] == new_s["indices"]
    print(f"\nPart 2: Vendi stochastic greedy, n = {args.n:,}, m = {args.m}, k = {args.k:,}, ε = 0.01 "
          f"(method {new_s['method']})")
    print(f"{'path':>5} {'wall s':>9} {'update s':>9} {'gains s':>9} {'ms/pick':>8}  value")
    for name, r in (("old", old_s), ("new", new_s)):
        print(f"{name:>5} {r['wall']:9.2f} {r['update']:9.2f} {r['gains']:9.2f} "
              f"{1e3 * r['wall'] / args.k:8.2f}  {r['value']:.12g}")
    print(f"  old/new wall {old_s['wall'] / new_s['wall']:.2f}×, update {old_s['update'] / new_s['update']:.2f}×; "
          f"same picks: {same}")
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(old_s["indices"], new_s["indices"])) if a != b)
        raise SystemExit(f"the picks differ from step {first} on")


if __name__ == "__main__":
    main()
