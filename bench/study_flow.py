"""A whole ``worth study`` process, this checkout against another, side by side: wall time, peak RSS, runs.

Each tree runs ``worth study --store STORE --config CONFIG`` from the command line (the default runner: a
LocalCluster of one worker per core) in a subprocess of its own, with its own MLflow database and report folder,
after the pool's kept work (``<store>.study``) is removed, so neither run finds the other's paths, completions or
scores: both start from scratch on the same pool. ``--ref-tree DIR`` is the other revision (``git worktree add
--detach DIR REV``, or ``git archive REV | tar -x -C DIR``); the reference runs first. The load average is printed
before and after: run it on a quiet box, nothing else running.

    python bench/study_flow.py --store /tmp/fm-bench.zarr --config bench/study-stream.yaml --ref-tree /tmp/ref

The store is modified (its kept work removed, the held-out split recorded on first use): give it a copy made
for the benchmark (``cp -r /tmp/fm.zarr /tmp/fm-bench.zarr``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def run_tree(tree: Path, store: str, config: str, work: Path, timeout: float) -> dict:
    """One ``worth study`` from ``tree``'s code: seconds, peak RSS of the process tree's largest member (from
    ``/usr/bin/time -v`` of the launcher, and the workers' own getrusage via the children's maximum), runs."""
    kept = Path(store.rstrip("/") + ".study")
    shutil.rmtree(kept, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PREFECT_HOME": str(work / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [sys.executable, "-m", "flows.cli.main", "study", "--store", store, "--config", config,
           "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--out", str(work / "report")]
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    res = subprocess.run(timer + cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    (work / "stdout.log").write_text(res.stdout)
    (work / "stderr.log").write_text(res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"{tree}: worth study exited {res.returncode}; see {work / 'stderr.log'}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    results = json.loads((work / "report" / "results.json").read_text())
    return {"seconds": seconds, "launcher_rss_gb": int(rss.group(1)) / 1e6 if rss else None,
            "runs": len(results["rows"]), "from_scratch": "kept from an earlier run" not in res.stdout,
            "accuracy": [r["accuracy"] for r in results["rows"]],
            "names": [r["name"] for r in results["rows"]]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a copy of a labelled store made for the benchmark")
    ap.add_argument("--config", required=True)
    ap.add_argument("--ref-tree", required=True, help="the other revision's tree (it runs first)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--keep", help="keep each run's folder here (its logs, Prefect database and MLflow database, for "
                                   "the per-task times) instead of a temporary one")
    args = ap.parse_args(argv)
    config = str(Path(args.config).resolve())
    print(f"load before: {_load()}", flush=True)
    out = {}
    folder = contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="worth-study-flow-")
    with folder as tmp:
        for name, tree in (("reference", Path(args.ref_tree).resolve()), ("this checkout", ROOT)):
            print(f"running {name} ({tree}) ...", flush=True)
            out[name] = run_tree(tree, args.store, config, Path(tmp) / name.replace(" ", "-"), args.timeout)
            print(f"  {out[name]['seconds']:.1f} s, {out[name]['runs']} runs", flush=True)
    print(f"load after: {_load()}")
    ref, new = out["reference"], out["this checkout"]
    same = ref["names"] == new["names"]
    print("\n| | reference | this checkout | ratio |\n|---|---|---|---|")
    print(f"| wall (s) | {ref['seconds']:.1f} | {new['seconds']:.1f} | {ref['seconds'] / new['seconds']:.2f}× |")
    print(f"| launcher peak RSS (GB) | {ref['launcher_rss_gb']} | {new['launcher_rss_gb']} | |")
    print(f"| runs | {ref['runs']} | {new['runs']} | |")
    acc = {n: a for n, a in zip(ref["names"], ref["accuracy"])}
    differ = sum(acc.get(n) != a for n, a in zip(new["names"], new["accuracy"]))
    print(f"\nsame runs: {same}; runs whose held-out accuracy differs: {differ} of {new['runs']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
