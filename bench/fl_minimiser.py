"""Facility location's greedy minimiser, old evaluation against new, side by side in one run (issue 22).

The study's facility-location minimisers and mixture completions (``worth.appraisal.minimise``, ``sample=64``)
spent ≈ 0.2 s a step on Fashion-MNIST pixels: every sampled candidate's exact gain, a GEMM row against the
≈ 57,000 rows a minimiser leaves unsettled. The new evaluation (``evaluation="state"``,
:class:`worth.appraisal.minimise._LeastFirst`) evaluates exactly only the candidates whose list lower bound
does not already rule them out; the old one (``evaluation="recompute"``) evaluates all. This script runs both
on the same rows, inside one ``share_first_pass()`` (as a study job does: the first pass is built once, before
either timed run, and reported on its own line), asserts the picks equal, and prints the times and ratios:

- ``trunk``: an unconstrained minimiser of ``--k`` picks from nothing (a minimiser path);
- ``fill``: ``--k`` picks completing ``--init`` rows already chosen (a mixture's completion: a seeded random
  draw of that many rows stands in for the maximiser's prefix it keeps).

Fashion-MNIST pixels from the Debian package ``dataset-fashion-mnist`` (``--n`` first training rows, scaled to
[0, 1] and rounded to float16 as ``worth embed --encoder pixels`` stores them); ``--tiny`` uses a seeded
Gaussian mixture at toy size instead (the smoke test)::

    python bench/fl_minimiser.py --n 60000 --k 200 --init 750
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np

from worth.appraisal.minimise import _MinRun, unit_rows_kept
from worth.facility.lists import share_first_pass

IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def fashion_pixels(n: int) -> np.ndarray:
    with gzip.open(IMAGES) as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n]
    return (X / 255.0).astype(np.float16).astype(np.float32)


def mixture(n: int, m: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((10, m))
    return np.abs(centres[rng.integers(0, 10, n)] + 0.3 * rng.random((n, m)))


def run(X, k: int, init: np.ndarray, evaluation: str, seed: int, sample: int) -> dict:
    """``k`` steps of a minimiser (``greedy_minimise``'s loop), timed; its picks and evaluation counts."""
    import worth
    from worth.appraisal.minimise import _unit_rows

    obj = worth.get_objective("facility-location", similarity="cosine")
    t0 = time.perf_counter()
    mr = _MinRun(obj, _unit_rows(X), None, None, init, sample, seed, evaluation)
    picks = [mr.step() for _ in range(k)]
    ev = mr.evaluator
    return {"seconds": time.perf_counter() - t0, "picks": picks,
            "evaluated": getattr(ev, "solved", None), "seen": getattr(ev, "screened", None),
            "batches": getattr(ev, "batches", None)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60_000, help="Fashion-MNIST training rows (default: all)")
    ap.add_argument("--k", type=int, default=200, help="steps timed per run")
    ap.add_argument("--init", type=int, default=750, help="rows kept before a fill's steps")
    ap.add_argument("--sample", type=int, default=64, help="candidates per step, as study.yaml's minimiser_sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="a Gaussian mixture at toy size: the smoke test")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    X = mixture(1500) if a.tiny else fashion_pixels(a.n)
    if a.tiny:
        a.k, a.init, a.sample = min(a.k, 40), min(a.init, 100), min(a.sample, 16)
    out = {"n": int(X.shape[0]), "m": int(X.shape[1]), "k": a.k, "sample": a.sample, "rows": {}}
    init = np.sort(np.random.default_rng(a.seed).choice(X.shape[0], a.init, replace=False))
    with share_first_pass(), unit_rows_kept(X):
        t0 = time.perf_counter()
        run(X, 2, np.zeros(0, np.int64), "recompute", a.seed, a.sample)  # builds the shared lists
        out["first_pass_seconds"] = time.perf_counter() - t0
        print(f"n = {X.shape[0]}, m = {X.shape[1]}, sample {a.sample}: first pass (shared) "
              f"{out['first_pass_seconds']:.1f} s", flush=True)
        print(f"{'row':<6} {'old (s)':>9} {'new (s)':>9} {'ratio':>7} {'old ms/step':>12} {'new ms/step':>12} "
              f"{'evaluated/seen (new)':>21} {'calls':>6} picks", flush=True)
        for name, start in (("trunk", np.zeros(0, np.int64)), ("fill", init)):
            old = run(X, a.k, start, "recompute", a.seed, a.sample)
            new = run(X, a.k, start, "state", a.seed, a.sample)
            same = old["picks"] == new["picks"]
            row = {"old_seconds": old["seconds"], "new_seconds": new["seconds"],
                   "ratio": old["seconds"] / new["seconds"], "evaluated": new["evaluated"], "seen": new["seen"],
                   "gain_calls": new["batches"],
                   "picks_equal": same}
            out["rows"][name] = row
            print(f"{name:<6} {old['seconds']:9.2f} {new['seconds']:9.2f} {row['ratio']:6.2f}x "
                  f"{1e3 * old['seconds'] / a.k:12.1f} {1e3 * new['seconds'] / a.k:12.1f} "
                  f"{new['evaluated']:>10}/{new['seen']:<10} {new['batches']:>6} {'equal' if same else 'DIFFER'}",
                  flush=True)
            if not same:
                raise SystemExit(f"{name}: the new evaluation's picks differ from the old one's")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
