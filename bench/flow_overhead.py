"""Per-task orchestration of the select flow, unbatched against batched, side by side in one run.

The per-class selection of issue 18 — a store of ``--classes`` classes of ``--per-class`` rows each, ``--quota``
picks per class (default 1,000 × 20, 13 each: ``worth select --store S --regime per-class --quotas 13``) — through
the select flow on one Dask LocalCluster (started once, after one Prefect API), three ways:

- ``inline``     the same flow body with no Prefect (the work alone: :class:`flows.runtime.InlineRuntime`);
- ``unbatched``  one Prefect task per class (``WORTH_JOBS_PER_TASK=1``, the shape before the runtime);
- ``batched``    the runtime's batches (:func:`pipeline.batch.jobs_per_task`).

For each: the flow body's wall time, the tasks it submitted, the jobs' own seconds (reading and selecting, from the
manifest), and the orchestration per task = (wall × slots − jobs' seconds) / tasks and its share of the slots'
time. The picks of the three are checked equal (and, with ``--check``, equal to ``worth.select`` on each class
alone). Timings only mean something on a quiet machine::

    python bench/flow_overhead.py                      # 1,000 classes × 20 rows, 13 each, 2 workers
    python bench/flow_overhead.py --classes 50 --workers 2   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 32


def make_class_store(path: str, classes: int, per_class: int, *, dim: int = DIM, seed: int = 0,
                     chunk_rows: int = 4096) -> str:
    """A store of ``classes × per_class`` unit rows (Gaussian), every class ``per_class`` rows, classes shuffled
    over the store (so each class's rows lie in several chunks, as real pools do)."""
    from storage.store import EmbeddingStore

    rng = np.random.default_rng(seed)
    n = classes * per_class
    labels = rng.permutation(np.repeat(np.arange(classes), per_class))
    X = rng.standard_normal((n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    st = EmbeddingStore.create(path, dim=dim, encoder={"name": "gaussian", "version": "1", "params": {"seed": seed}},
                               source={"spec": f"bench/flow_overhead.py {classes}x{per_class}", "kind": "synthetic",
                                       "fingerprint": str(seed)},
                               chunk_rows=chunk_rows, dtype="float32", classes=[f"c{c}" for c in range(classes)])
    st.reserve([f"r{i:07d}" for i in range(n)], labels, ["train"] * n)
    for c in range(st.n_chunks):
        lo, hi = st.chunk_bounds(c)
        st.write_rows(c, lo, X[lo:hi])
    return path


def per_class_reference(store: str, quota: int) -> dict[int, list[int]]:
    """``worth.select`` on each class alone: class → picked store rows, in pick order."""
    import worth
    from storage.store import EmbeddingStore

    st = EmbeddingStore.open(store)
    X, y = st.to_numpy(), st.labels()
    out = {}
    for c in np.unique(y).tolist():
        rows = np.flatnonzero(y == c)
        out[c] = rows[np.asarray(worth.select(X[rows], quota, "vendi").indices)].tolist()
    return out


def picks_by_class(manifest: dict) -> dict[int, list[int]]:
    rows, classes = manifest["picks"]["rows"], manifest["picks"]["classes"]
    out: dict[int, list[int]] = {}
    for r, c in zip(rows, classes):
        out.setdefault(int(c), []).append(int(r))
    return out


def run(store: str, how: str, quota: int, task_runner=None) -> dict:
    from flows.select import SelectionSpec, SelectOptions, run_select
    from pipeline.batch import JOBS_PER_TASK_ENV
    from storage import manifest as mf

    spec = SelectionSpec(name=f"per-class-{how}", objective="vendi", regime="per-class", quotas=quota)
    previous = os.environ.pop(JOBS_PER_TASK_ENV, None)
    if how == "unbatched":
        os.environ[JOBS_PER_TASK_ENV] = "1"
    try:
        t0 = time.perf_counter()
        result = run_select(SelectOptions(store=store, selections=[spec]),
                            **({"task_runner": task_runner} if how != "inline" else {}))
        wall = time.perf_counter() - t0
    finally:
        os.environ.pop(JOBS_PER_TASK_ENV, None)
        if previous is not None:
            os.environ[JOBS_PER_TASK_ENV] = previous
    e = result["manifests"][0]
    man = mf.read_manifest(store, e["name"], e["version"])
    work = sum(j["total"] + j["read"] for j in man["timings"]["jobs"])
    return {"how": how, "wall": wall, "body": result["seconds"], "jobs": result["jobs"], "work": work,
            "manifest": man}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--quota", type=int, default=13)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", help="where to write the store (default: a temporary folder)")
    parser.add_argument("--check", action="store_true", help="also compare with worth.select on each class alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from infra.dask import cluster_kwargs, local_spec, prefect_api
    from pipeline.batch import jobs_per_task

    tmp = tempfile.mkdtemp(prefix="worth-flow-overhead-")
    store = make_class_store(args.store or os.path.join(tmp, "classes.zarr"), args.classes, args.per_class)
    rows = [run(store, "inline", args.quota)]
    with prefect_api():
        with LocalCluster(**cluster_kwargs(local_spec(args.workers))[1]) as cluster:
            slots = sum(w["nthreads"] for w in cluster.scheduler_info["workers"].values())
            for how in ("unbatched", "batched"):
                rows.append(run(store, how, args.quota, DaskTaskRunner(address=cluster.scheduler_address)))
    reference = picks_by_class(rows[0]["manifest"])
    for r in rows[1:]:
        assert picks_by_class(r["manifest"]) == reference, f"{r['how']} picked other rows than inline"
    if args.check:
        assert reference == per_class_reference(store, args.quota), "the flow's picks differ from worth.select"
    print(f"per-class selection: {args.classes:,} classes x {args.per_class} rows, {args.quota} each; "
          f"{args.workers} workers ({slots} slots); picks equal across runs"
          + (" and to worth.select per class" if args.check else ""))
    print(f"{'run':<10} {'tasks':>6} {'wall s':>8} {'jobs s':>8} {'orch. s/task':>13} {'orch. share':>12}")
    for r in rows:
        tasks = 0 if r["how"] == "inline" else (r["jobs"] if r["how"] == "unbatched" else
                                                 -(-r["jobs"] // jobs_per_task(r["jobs"], slots)))
        n_slots = 1 if r["how"] == "inline" else slots
        over = max(0.0, r["body"] * n_slots - r["work"])
        per_task = f"{over / tasks:.4f}" if tasks else "-"
        share = over / (r["body"] * n_slots) if r["body"] > 0 else 0.0
        r.update(tasks=tasks, overhead_per_task=over / tasks if tasks else None, share=share)
        print(f"{r['how']:<10} {tasks:>6} {r['wall']:>8.2f} {r['work']:>8.2f} {per_task:>13} {share:>11.1%}")
    unb, bat = rows[1], rows[2]
    print(f"batched / unbatched wall: {bat['wall'] / unb['wall']:.3f}")
    return rows


if __name__ == "__main__":
    main()
