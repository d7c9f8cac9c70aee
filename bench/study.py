"""Where a study's time goes: realisation, scoring, training and orchestration, today's path against the fast one.

For a study config and a pool (a store made by ``worth embed``, or scikit-learn's digits with ``--digits``) it
measures, side by side in one process:

=============  ===============================================================================================
phase          reference (today's per-spec path)             fast path
=============  ===============================================================================================
realisation    ``realise(spec)`` per distinct subset, one    ``realise_subsets``: every greedy path once, every
               process-wide cache (a lower bound of the      prefix and mixture cut from it
               flow, whose cache is per worker process)
scoring        ``score_subset`` (``worth.score`` per         ``score_subsets``: one eigendecomposition per subset,
               objective and subset)                         facility location by chunked GEMMs
training       ``train_subset`` on a sample of specs (``--train-sample`` per (regime, k)), scaled to every spec
orchestration  Prefect task overhead: ``--orchestration N`` no-op tasks on a local flow (thread pool), per task,
               × 3 tasks per spec (today's realise / score / train per run); 0 skips it (the harness takes
               ~15 s to start)
=============  ===============================================================================================

Where a phase would take too long in full, ``--score-sample`` / ``--realise-reference no`` cut it: sampled
phases are scaled to the whole study and marked ``~``; the ratio is always measured on the same subsets.
Timings on a loaded machine mean nothing: run it on a quiet box. Peak RSS is reported (ru_maxrss).

    python bench/study.py --digits --config study-quick.yaml
    python bench/study.py --store fm.zarr --config study.yaml --realise-reference no --score-sample 60 \\
        --train-sample 2 --orchestration 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worth.appraisal import (StudyConfig, holdout_split, load_config, make_specs, realise, realise_subsets,  # noqa: E402
                             score_subset, score_subsets, train_subset)
from worth.appraisal.design import check_design  # noqa: E402


def _pool_from_store(store: str, config: StudyConfig):
    from flows.study import StudyOptions, plan_study
    from pipeline.study import load_pool

    plan = plan_study(StudyOptions(store=store, config_data=config.to_dict()))
    pool = load_pool(store, plan.holdout_desc)
    return pool.X, pool.labels, pool.X_test, pool.y_test, pool.n_classes


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    held = holdout_split(y, 0.2, seed=0)
    return X[~held], y[~held], X[held], y[held], 10


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def realisation(specs, X, y, reference: bool):
    fast, t_fast = _timed(realise_subsets, specs, X, y)
    t_ref = None
    if reference:
        def ref():
            cache, out = {}, {}
            for s in specs:
                if s.subset_key not in out:
                    out[s.subset_key] = realise(s, X, y, cache)
            return out
        got, t_ref = _timed(ref)
        assert all(np.array_equal(got[k], fast[k]) for k in fast), "fast realisation differs from the reference"
    return fast, t_ref, t_fast


def scoring(subsets: dict, X, y, objectives, sample: int | None):
    keys = list(subsets)
    picked = keys if sample is None or sample >= len(keys) else [keys[i] for i in np.linspace(
        0, len(keys) - 1, sample).round().astype(int)]
    scale = len(keys) / len(picked)
    _, t_fast = _timed(score_subsets, X, [subsets[k] for k in picked], objectives, y)
    _, t_ref = _timed(lambda: [score_subset(X, subsets[k], objectives, y) for k in picked])
    return t_ref * scale, t_fast * scale, scale != 1


def training(specs, subsets, X, y, Xt, yt, n_classes, config, per_group: int):
    groups = defaultdict(list)
    for s in specs:
        groups[(s.regime, s.k)].append(s)
    total, sampled = 0.0, False
    for members in groups.values():
        take = members[:per_group] if per_group else members
        sampled |= len(take) < len(members)
        t0 = time.perf_counter()
        for s in take:
            train_subset(s, subsets[s.subset_key], X, y, Xt, yt, n_classes, config)
        total += (time.perf_counter() - t0) / len(take) * len(members)
    return total, sampled


def orchestration(n_tasks: int) -> float:
    """Seconds of Prefect overhead per task: no-op tasks submitted from a flow on a thread pool."""
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    @task
    def noop(i):
        return i

    @flow
    def many(n):
        return [f.result() for f in [noop.submit(i) for i in range(n)]]

    with prefect_test_harness(server_startup_timeout=120):
        many(2)  # warm
        t0 = time.perf_counter()
        many(n_tasks)
        return (time.perf_counter() - t0) / n_tasks


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="an embedding store made by `worth embed` (labelled, complete)")
    src.add_argument("--digits", action="store_true", help="scikit-learn's digits, 20 %% held out")
    ap.add_argument("--config", default=None, help="a study.yaml (default: the --quick preset)")
    ap.add_argument("--realise-reference", choices=("yes", "no"), default="yes",
                    help="also time today's per-spec realisation (hours on the full Fashion-MNIST study)")
    ap.add_argument("--score-sample", type=int, default=None, help="score this many subsets by both paths, scaled")
    ap.add_argument("--train-sample", type=int, default=0, help="specs trained per (regime, k), scaled (0: all)")
    ap.add_argument("--orchestration", type=int, default=0, help="no-op Prefect tasks to time (0: skip)")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)

    config = load_config(args.config) if args.config else StudyConfig.quick()
    t0 = time.perf_counter()
    X, y, Xt, yt, n_classes = _digits() if args.digits else _pool_from_store(args.store, config)
    t_load = time.perf_counter() - t0
    check_design(config, y)
    specs = make_specs(config, n_pool=len(y))
    subsets, r_ref, r_fast = realisation(specs, X, y, args.realise_reference == "yes")
    s_ref, s_fast, s_sampled = scoring(subsets, X, y, config.objectives, args.score_sample)
    t_train, t_sampled = training(specs, subsets, X, y, Xt, yt, n_classes, config, args.train_sample)
    per_task = orchestration(args.orchestration) if args.orchestration else None
    o_ref = None if per_task is None else per_task * 3 * len(specs)

    rows = [("load pool", t_load, t_load, False), ("realisation", r_ref, r_fast, False),
            ("scoring", s_ref, s_fast, s_sampled), ("training", t_train, t_train, t_sampled),
            ("orchestration (3 tasks/spec)", o_ref, o_ref, False)]
    total_ref = sum(r[1] for r in rows if r[1] is not None)
    total_fast = sum(r[2] for r in rows if r[2] is not None)
    print(f"pool {X.shape[0]} x {X.shape[1]}, {len(specs)} specs, {len(subsets)} distinct subsets; "
          f"load average {os.getloadavg()[0]:.2f}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"{'phase':<30}{'reference s':>14}{'fast s':>12}{'ratio':>8}{'share (fast)':>14}")
    fmt = lambda v, m: "-" if v is None else f"{'~' if m else ''}{v:.1f}"  # noqa: E731
    for name, ref, fast, mark in rows:
        ratio = "-" if ref is None or fast is None or fast == 0 else f"{ref / fast:.1f}"
        share = "-" if fast is None else f"{100 * fast / total_fast:.0f} %"
        print(f"{name:<30}{fmt(ref, mark):>14}{fmt(fast, mark):>12}{ratio:>8}{share:>14}")
    print(f"{'total (measured phases)':<30}{total_ref:>14.1f}{total_fast:>12.1f}")
    out = {"n": int(X.shape[0]), "m": int(X.shape[1]), "specs": len(specs), "subsets": len(subsets),
           "rows": [{"phase": r[0], "reference": r[1], "fast": r[2], "scaled": r[3]} for r in rows],
           "load_average": os.getloadavg()[0]}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
