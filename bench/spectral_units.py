"""The study's spectral maximiser units, a reference checkout against this one, side by side in one run (issue 22).

A maximiser unit of the study (``worth.appraisal.paths.realise_unit``) is one branching greedy run: the
unconstrained path and every class-balanced one (the study's k and the coreset table's 1 %, 5 %, 10 %). On
Fashion-MNIST pixels they were the study's largest path jobs: the hybrid's 17 worker-minutes, the power trace's
11. This script runs the unit of each ``--objectives`` entry to ``--picks`` (balanced branches beyond it
dropped), one thread as on a study worker, first in the reference tree (``--ref-tree``, e.g. a ``git worktree``
of the commit before) and then in this one, each in a fresh process, and prints the times, their ratio and
whether every path's picks are equal::

    git worktree add --detach /tmp/wt-ref 4ae98b5
    python bench/spectral_units.py --ref-tree /tmp/wt-ref --objectives hybrid,power --picks 1000

Fashion-MNIST pixels from the Debian package ``dataset-fashion-mnist`` (as ``bench/fl_minimiser.py`` reads them);
``--tiny`` uses a seeded Gaussian mixture at toy size (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PARAMS = {"vendi": {"q": 1.0}, "entropy": {}, "logdet": {"sigma2": 1.0}, "power": {"alpha": 0.5},
          "hybrid": {"alpha": 1.0, "c": 1.0}}  # study.yaml's
BALANCED = (100, 300, 600, 1000, 3000, 6000)  # the study's k and the coreset table's shares of 60,000

_CHILD = r"""
import gzip, hashlib, json, sys, time
import numpy as np
args = json.loads(sys.argv[1])
import worth
from worth.appraisal.paths import realise_unit
from worth.threads import run_threads
if args["tiny"]:
    rng = np.random.default_rng(0)
    centres = rng.random((10, 24))
    y = rng.integers(0, 10, 800)
    X = np.abs(centres[y] + 0.3 * rng.random((800, 24)))
else:
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:args["n"]]
    X = (X / 255.0).astype(np.float16).astype(np.float64)
    with gzip.open("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:args["n"]].astype(np.int64)
unit = {"kind": "max", "objective": args["objective"], "params": json.dumps(args["params"], sort_keys=True),
        "seed": None, "sample": None, "unconstrained": args["unconstrained"], "balanced": args["balanced"]}
with run_threads(1):
    t0 = time.perf_counter()
    got = realise_unit(unit, X, y)
    seconds = time.perf_counter() - t0
digest = hashlib.sha256(b"".join(np.asarray(got[key], np.int64).tobytes()
                                 for key in sorted(got, key=lambda k: k.name))).hexdigest()
print(json.dumps({"seconds": seconds, "picks": sum(int(v.size) for v in got.values()), "digest": digest,
                  "worth": worth.__file__}))
"""


def run_unit(tree: Path, objective: str, picks: int, n: int, tiny: bool) -> dict:
    """One unit in a fresh process importing ``worth`` from ``tree``."""
    args = {"objective": objective, "params": PARAMS[objective], "n": n, "tiny": tiny,
            "unconstrained": min(picks, 1000), "balanced": [k for k in BALANCED if k <= picks]}
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env, cwd=str(tree),
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{objective} in {tree} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["worth"].startswith(str(tree.resolve())):
        raise SystemExit(f"{tree} did not provide worth (imported {out['worth']}); pass a checkout's root")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref-tree", required=True, help="root of the reference checkout (a git worktree)")
    ap.add_argument("--objectives", default="hybrid,power", help=f"comma-separated, of {sorted(PARAMS)}")
    ap.add_argument("--picks", type=int, default=1000, help="longest path: balanced branches beyond it dropped")
    ap.add_argument("--n", type=int, default=60_000, help="Fashion-MNIST training rows (default: all)")
    ap.add_argument("--tiny", action="store_true", help="a Gaussian mixture at toy size: the smoke test")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    ref = Path(a.ref_tree).resolve()
    names = [s.strip() for s in a.objectives.split(",") if s.strip()]
    bad = [s for s in names if s not in PARAMS]
    if bad:
        raise SystemExit(f"--objectives {','.join(bad)}: unknown; pass some of {sorted(PARAMS)}")
    if a.tiny:
        a.picks = min(a.picks, 100)
    out = {"n": 800 if a.tiny else a.n, "picks": a.picks, "ref_tree": str(ref), "rows": {}}
    print(f"n = {out['n']}, units to {a.picks} picks, one thread; reference {ref}", flush=True)
    print(f"{'objective':<10} {'reference (s)':>14} {'this (s)':>10} {'ratio':>7} {'path picks':>11} picks", flush=True)
    for name in names:
        old = run_unit(ref, name, a.picks, a.n, a.tiny)
        new = run_unit(HERE, name, a.picks, a.n, a.tiny)
        same = old["digest"] == new["digest"]
        row = {"reference_seconds": old["seconds"], "seconds": new["seconds"],
               "ratio": old["seconds"] / new["seconds"], "path_picks": new["picks"], "picks_equal": same}
        out["rows"][name] = row
        print(f"{name:<10} {old['seconds']:14.1f} {new['seconds']:10.1f} {row['ratio']:6.2f}x {new['picks']:>11} "
              f"{'equal' if same else 'DIFFER'}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    if not all(r["picks_equal"] for r in out["rows"].values()):
        raise SystemExit("picks differ between the reference and this checkout")
    return out


if __name__ == "__main__":
    main()
