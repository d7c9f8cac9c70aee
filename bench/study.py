"""Where a study's time goes: realisation, scoring, training and orchestration — this checkout against another.

For a study config and a pool (a store made by ``worth embed``, optionally cut to a stratified ``--subsample``
of it, or scikit-learn's digits with ``--digits``) it measures in one process, on ``--threads`` threads (1: one
of the flow's two workers on this 2-core box):

=================  ==========================================================================================
phase              what is timed
=================  ==========================================================================================
per-spec           (``--per-spec yes``) ``realise(spec)`` per distinct subset with one process-wide cache: a lower
                   bound of the flow before this change, which realised per subset with a cache per worker
paths · max/min    every greedy path the study cuts its subsets from: the branching runs of
                   :func:`worth.appraisal.paths.path_units` where this checkout has them, else
                   :func:`~worth.appraisal.paths.realise_path` per path (one path per regime and k)
fills              the mixtures completed by the greedy minimiser, from the stored maximisers
cuts               every other subset (prefixes, seeded draws, random completions)
scoring            ``score_subsets`` (one eigendecomposition per subset, facility location by GEMMs against the
                   union of the subsets' rows) over every subset; ``score_subset`` (``worth.score`` per objective)
                   on ``--score-sample`` of them, scaled
training           ``train_subset`` on ``--train-sample`` specs per (regime, k), scaled to every spec
orchestration      (``--orchestration N``) Prefect overhead per task, × the tasks the flow makes
=================  ==========================================================================================

``--ref-tree DIR`` runs the same measurement on the code at ``DIR`` first (an export of another revision:
``git archive main | tar -x -C DIR``), in a subprocess, on the same pool, and prints both side by side with the
ratios. Scaled phases are marked ``~``. Run on a quiet box; the load average is printed before and after.

    python bench/study.py --digits --config study-quick.yaml
    python bench/study.py --store /tmp/fm.zarr --config study.yaml --subsample 10000 --study-k 50,150 \\
        --ref-tree /tmp/main --train-sample 2 --score-sample 60 --json /tmp/fm-breakdown.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

_TREE = os.environ.get("WORTH_BENCH_TREE")
sys.path.insert(0, _TREE or str(Path(__file__).resolve().parents[1]))

from worth.appraisal import StudyConfig, holdout_split, load_config, make_specs, realise  # noqa: E402
from worth.appraisal import paths as P  # noqa: E402
from worth.appraisal import score_subset, score_subsets, train_subset  # noqa: E402
from worth.appraisal.design import check_design, complete_mixture, spec_rng  # noqa: E402


def _shared_first_pass():
    try:
        from worth.facility.lists import share_first_pass
    except ImportError:  # a revision before it
        return contextlib.nullcontext()
    return share_first_pass()


def _threads(n: int | None):
    from worth.threads import run_threads

    return run_threads(n)


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


def subsample(y, n: int, seed: int = 0) -> np.ndarray:
    """``n`` pool rows, the same share of every class (seeded), in pool order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    keep = [rng.choice(np.flatnonzero(y == c), size=round(n * np.mean(y == c)), replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def realisation(specs, X, y, per_spec: bool) -> tuple[dict, dict]:
    """Every distinct subset, and the seconds of each part (see the module docstring)."""
    t: dict[str, float] = {}
    if per_spec:
        def ref():
            cache, out = {}, {}
            for s in specs:
                if s.subset_key not in out:
                    out[s.subset_key] = realise(s, X, y, cache)
            return out
        _, t["per-spec"] = _timed(ref)
    plan = P.plan_paths(specs)
    paths: dict = {}
    t["paths · max"] = t["paths · min"] = 0.0
    with _shared_first_pass():
        if hasattr(P, "path_units"):  # branching runs: every regime and k of an objective in one
            for unit in P.path_units(plan):
                got, s = _timed(P.realise_unit, unit, X, y)
                paths.update(got)
                t[f"paths · {unit['kind']}"] += s
        else:
            for key, length in plan.items():
                paths[key], s = _timed(P.realise_path, key, length, X, y)
                t[f"paths · {key.kind}"] += s
        subsets: dict = {}
        t0 = time.perf_counter()
        for s in specs:
            if s.kind == "mix" and s.filler == "min" and s.subset_key not in subsets:
                best = paths[P.path_key(s)][:s.k]
                subsets[s.subset_key] = complete_mixture(s, best, X, y, spec_rng(s))
        t["fills"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in specs:
        if s.subset_key not in subsets:
            subsets[s.subset_key] = P.subset_from_paths(s, paths, X, y)
    t["cuts"] = time.perf_counter() - t0
    return subsets, t


def scoring(subsets: dict, X, y, objectives, sample: int | None):
    keys = list(subsets)
    _, t_fast = _timed(score_subsets, X, [subsets[k] for k in keys], objectives, y)
    picked = keys if sample is None or sample >= len(keys) else [keys[i] for i in np.linspace(
        0, len(keys) - 1, sample).round().astype(int)]
    _, t_ref = _timed(lambda: [score_subset(X, subsets[k], objectives, y) for k in picked])
    return t_ref * len(keys) / len(picked), t_fast, len(picked) < len(keys)


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


def measure(args) -> dict:
    config = load_config(args.config) if args.config else StudyConfig.quick()
    if args.study_k:
        config = StudyConfig.from_dict({**config.to_dict(), "k": [int(k) for k in args.study_k.split(",")]})
    if args.seeds:
        config = StudyConfig.from_dict({**config.to_dict(), "seeds": list(range(args.seeds))})
    if args.no_coreset:
        config = StudyConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "coreset"})
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    X, y, Xt, yt, n_classes = _digits() if args.digits else _pool_from_store(args.store, config)
    if args.subsample:
        keep = subsample(y, args.subsample)
        X, y = X[keep], y[keep]
    rows = [("load pool", time.perf_counter() - t0, False)]
    check_design(config, y)
    specs = make_specs(config, n_pool=len(y))
    with _threads(args.threads):
        subsets, parts = realisation(specs, X, y, args.per_spec == "yes")
        rows += [(name, s, False) for name, s in parts.items()]
        s_ref, s_fast, s_sampled = scoring(subsets, X, y, config.objectives, args.score_sample)
        rows += [("scoring (score_subsets)", s_fast, False), ("scoring per objective (score_subset)", s_ref, s_sampled)]
        t_train, t_sampled = training(specs, subsets, X, y, Xt, yt, n_classes, config, args.train_sample)
        rows.append(("training", t_train, t_sampled))
    if args.orchestration:
        rows.append(("orchestration per task", orchestration(args.orchestration), False))
    digest = int(sum(int(np.sum(v)) * (i + 1) for i, v in enumerate(subsets.values())) % (1 << 61))
    return {"tree": _TREE or "this checkout", "n": int(X.shape[0]), "m": int(X.shape[1]), "specs": len(specs),
            "subsets": len(subsets), "rows": [{"phase": r[0], "seconds": r[1], "scaled": r[2]} for r in rows],
            "picks_digest": digest, "load_before": load0, "load_after": os.getloadavg()[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": args.threads}


def _table(runs: list[dict]) -> str:
    names = []
    for r in runs:
        names += [row["phase"] for row in r["rows"] if row["phase"] not in names]
    head = "| phase | " + " | ".join(f"{r['tree']} s" for r in runs) + (" | ratio |" if len(runs) == 2 else " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in names:
        vals = []
        for r in runs:
            row = next((x for x in r["rows"] if x["phase"] == name), None)
            vals.append(None if row is None else row)
        cells = ["-" if v is None else f"{'~' if v['scaled'] else ''}{v['seconds']:.1f}" for v in vals]
        ratio = ""
        if len(runs) == 2:
            a, b = vals
            ratio = f" {a['seconds'] / b['seconds']:.1f} |" if a and b and b["seconds"] > 0 else " - |"
        lines.append(f"| {name} | " + " | ".join(cells) + " |" + ratio)
    for r in runs:
        lines.append(f"\n{r['tree']}: pool {r['n']} x {r['m']}, {r['specs']} specs, {r['subsets']} distinct subsets, "
                     f"{r['threads']} thread(s); load average {r['load_before']:.2f} → {r['load_after']:.2f}; "
                     f"peak RSS {r['peak_rss_mb']:.0f} MB; picks digest {r['picks_digest']}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="an embedding store made by `worth embed` (labelled, complete)")
    src.add_argument("--digits", action="store_true", help="scikit-learn's digits, 20 %% held out")
    ap.add_argument("--config", default=None, help="a study.yaml (default: the --quick preset)")
    ap.add_argument("--subsample", type=int, default=None, help="a stratified, seeded sample of this many pool rows")
    ap.add_argument("--study-k", default=None, help="replace the config's k, e.g. 50,150")
    ap.add_argument("--seeds", type=int, default=None, help="replace the config's seeds by range(N)")
    ap.add_argument("--no-coreset", action="store_true", help="drop the config's coreset section")
    ap.add_argument("--per-spec", choices=("yes", "no"), default="no",
                    help="also time per-spec realise (the flow before this change; hours on the full study)")
    ap.add_argument("--score-sample", type=int, default=None, help="subsets scored by score_subset, scaled")
    ap.add_argument("--train-sample", type=int, default=0, help="specs trained per (regime, k), scaled (0: all)")
    ap.add_argument("--orchestration", type=int, default=0, help="no-op Prefect tasks to time (0: skip)")
    ap.add_argument("--threads", type=int, default=1, help="threads of the run (1: one of the flow's workers)")
    ap.add_argument("--ref-tree", default=None, help="another revision's code (a directory): measured first")
    ap.add_argument("--json", default=None, help="also write the measurements as JSON here")
    args = ap.parse_args(argv)
    runs = []
    if args.ref_tree:
        out = Path(args.json or "/tmp/bench-study.json").with_suffix(".ref.json")
        argv2 = [a for a in (argv if argv is not None else sys.argv[1:])]
        i = argv2.index("--ref-tree")
        argv2 = argv2[:i] + argv2[i + 2:]
        if "--json" in argv2:
            j = argv2.index("--json")
            argv2 = argv2[:j] + argv2[j + 2:]
        env = {**os.environ, "WORTH_BENCH_TREE": str(Path(args.ref_tree).resolve()),
               "PYTHONPATH": str(Path(args.ref_tree).resolve())}
        subprocess.run([sys.executable, __file__, *argv2, "--json", str(out)], env=env, check=True)
        runs.append(json.loads(out.read_text())[-1])
    runs.append(measure(args))
    print(_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return runs[-1]


if __name__ == "__main__":
    main()
