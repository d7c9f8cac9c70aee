"""Dask's worker malloc setting against worth's, side by side in one run: the same work in a worker of each.

Dask's nanny spawns workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which switches off glibc's sliding mmap
threshold: every block over 128 KiB is mapped fresh, faulted page by page, and unmapped on ``free``.
:func:`infra.dask.tune_worker_malloc` spawns worth's local workers with ``infra.dask.WORKER_MALLOC`` instead.
This starts a one-worker LocalCluster with each setting in turn (``--repeat`` rounds, alternating which goes
first) and runs the study's two kinds of worker work in it:

- ``train``  the study's MLP (``study.yaml``'s settings) on a seeded 1,000-row subset, 1,000 steps, 3 seeds;
- ``path``   a Vendi Score greedy path of ``--picks`` picks over the pool (the eigen-updates of an m × m state).

For each: wall seconds, the worker's user and system CPU seconds and its minor page faults during the work
(``getrusage`` in the worker), and the ratio of the two settings; the results (accuracies, picks) are checked
equal. Timings only mean something on a quiet machine::

    python bench/worker_malloc.py --store fm.zarr            # Fashion-MNIST pixels (worth embed fashion-mnist)
    python bench/worker_malloc.py --picks 100 --repeat 1     # a smoke run on digits
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _work(kind: str, store: str, picks: int) -> dict:
    """One piece of work in the worker: its wall, CPU and page-fault figures, and a digest of its result."""
    import resource

    import numpy as np

    from storage.holdout import split_mask
    from storage.store import EmbeddingStore

    st = EmbeddingStore.open(store)
    X = st.to_numpy(dtype="float32" if kind == "train" else "float64")
    y = np.asarray(st.labels())
    held = split_mask(st)  # the store's own test rows, else every fifth row
    held = held if held is not None else np.arange(len(y)) % 5 == 0
    train, test = np.flatnonzero(~held), np.flatnonzero(held)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if kind == "train":
        from worth.train.fit import fit_and_evaluate

        rng = np.random.default_rng(0)
        idx = rng.choice(train, min(1000, train.size), replace=False)
        result = [fit_and_evaluate(X[idx], y[idx], X[test], y[test], int(y.max()) + 1, steps=1000, seed=s,
                                   batch_size=64, lr=1e-3, weight_decay=1e-4, hidden=128, threads=1).accuracy
                  for s in range(3)]
    else:
        import worth

        result = worth.select(X[train], picks, "vendi", q=1.0).indices.tolist()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
            "faults": r1.ru_minflt - r0.ru_minflt, "result": result}


def _run(setting: str, store: str, picks: int) -> dict[str, dict]:
    import dask
    from distributed import Client, LocalCluster

    from infra.dask import DASK_MALLOC_TRIM, cluster_kwargs, local_spec

    names = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    for name in names:  # a nanny leaves its own in os.environ, and the next takes os.environ's over the config's
        os.environ.pop(name, None)
    spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
    env = {k: v for k, v in spawn.items() if k not in names} | {"MALLOC_TRIM_THRESHOLD_": DASK_MALLOC_TRIM}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        kw = cluster_kwargs(local_spec(1))[1]  # the cluster worth starts; this tunes the spawn environment ...
        if setting == "dask":
            dask.config.set({"distributed.nanny.pre-spawn-environ": env})  # ... back to Dask's own
        with LocalCluster(**kw) as cluster, Client(cluster) as client:
            seen = next(iter(client.run(lambda: {k: os.environ.get(k) for k in names}).values()))
            out = {kind: client.submit(_work, kind, store, picks, pure=False).result() for kind in ("train", "path")}
    out["env"] = seen
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="an embedding store (default: digits, embedded into a temporary store)")
    ap.add_argument("--picks", type=int, default=400, help="picks of the Vendi path (default 400)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of both settings (default 2)")
    args = ap.parse_args(argv)
    store = args.store
    if store is None:
        import subprocess

        store = str(Path(tempfile.mkdtemp()) / "digits.zarr")
        worth = str(Path(sys.executable).with_name("worth"))
        subprocess.run([worth, "embed", "digits", "--encoder", "pixels", "--store", store, "--runner", "inline"],
                       check=True, capture_output=True)
    runs: dict[str, list[dict]] = {"dask": [], "worth": []}
    for r in range(args.repeat):
        for setting in (("dask", "worth") if r % 2 == 0 else ("worth", "dask")):
            runs[setting].append(_run(setting, store, args.picks))
    for setting, got in runs.items():
        print(f"{setting:5s} workers spawn with {got[0]['env']}")
    print(f"\n| work | setting | wall (s) | user CPU (s) | system CPU (s) | minor faults | wall ratio |")
    print("|---|---|---|---|---|---|---|")
    same = True
    for kind in ("train", "path"):
        best = {s: min(got, key=lambda g: g[kind]["wall"])[kind] for s, got in runs.items()}
        for setting in ("dask", "worth"):
            b = best[setting]
            ratio = best["dask"]["wall"] / b["wall"]
            print(f"| {kind} | {setting} | {b['wall']:.2f} | {b['user']:.2f} | {b['sys']:.2f} | {b['faults']:,} | "
                  f"{ratio:.2f}× |")
        same &= all(g[kind]["result"] == runs["dask"][0][kind]["result"] for got in runs.values() for g in got)
    print(f"\nresults equal across settings and rounds: {same} (best of {args.repeat} rounds each)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
