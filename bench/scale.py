"""ImageNet-1K-shaped selection through the select flow, from a Zarr store: time, peak RSS, value, evaluations.

The data is a Gaussian mixture of the ImageNet-1K train shape — ``n`` unit rows (default 1,281,167), m = 512,
1,000 classes of ≈ n/1000 rows each: row = class mean (a random unit vector) + a shared rank-32 factor + isotropic
noise, normalised (within-class cosine ≈ 0.5, between-class ≈ 0.2 from the shared factor). It is generated one
store chunk at a time (:func:`make_store`: one chunk in memory, deterministic per chunk) into an
:class:`storage.store.EmbeddingStore`.

Rows of the table (``--rows``; k from n, as the issue's ImageNet targets are):

=============  ==================================================================================  =============
row            selection (through :func:`flows.select.run_select`, on Dask or inline)  runner
=============  ==================================================================================  =============
stochastic     Vendi, stochastic greedy ε = 0.01, k = 10 % of n                                    inline
exact          Vendi, greedy, k = 1 % of n (the keyed lazy route: exact greedy picks)              inline
per-class      Vendi per class, quotas round(0.1 n / 1000) each (1,000 tasks)                       2-worker LocalCluster
sharded        GreeDi, P = 8 parts + merge, Vendi greedy, k = 1 %; value / the ``exact`` row's      2-worker LocalCluster
fl             facility location kNN mode (K = 50, graph by faiss HNSW: ``ann="faiss-hnsw"``), lazy,  inline
               k = 1 %
fl-ref         on the first ``--fl-sample`` rows: recall@50 of the faiss graph against brute force  (no flow)
               (on 2,000 query rows), and the dense facility-location value of the faiss-graph
               selection / the exact-graph selection's (k = 1 % of the sample)
=============  ==================================================================================  =============

Every row runs in its own subprocess (its own session: a ``--timeout`` kills the whole tree and the row reads
"timed out after X s"). Peak RSS is sampled (psutil, every 0.2 s) over that subprocess and its descendants —
the Dask workers for the LocalCluster rows — and reported for the largest single process, with
``getrusage`` for the row's own process as a floor.

    python bench/scale.py --n 100000 --store /tmp/scale-100k.zarr
    python bench/scale.py --n 1281167 --store /tmp/scale-in1k.zarr --rows exact,stochastic --timeout 1500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

M = 512
CLASSES = 1000
ROWS = ("stochastic", "exact", "per-class", "sharded", "fl", "fl-ref")
DASK_ROWS = ("per-class", "sharded")
SHARED_RANK = 32


def mixture_chunk(start: int, stop: int, labels: np.ndarray, seed: int, classes: int = CLASSES) -> np.ndarray:
    """Rows ``start..stop`` of the mixture (float32, unit norm); depends only on ``seed`` and the row range."""
    base = np.random.default_rng(seed)
    means = base.standard_normal((classes, M))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    shared = np.linalg.qr(base.standard_normal((M, SHARED_RANK)))[0]
    rng = np.random.default_rng([seed, start])
    n = stop - start
    X = (means[labels[start:stop]] + 0.8 / np.sqrt(SHARED_RANK) * rng.standard_normal((n, SHARED_RANK)) @ shared.T
         + 0.5 / np.sqrt(M) * rng.standard_normal((n, M)))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32)


def mixture_labels(n: int, seed: int, classes: int = CLASSES) -> np.ndarray:
    """Balanced labels (class sizes differ by at most one), in a random order."""
    return np.random.default_rng([seed, 2**32 - 1]).permutation(np.arange(n) % classes).astype(np.int64)


def make_store(path: str, n: int, *, dtype: str = "float16", chunk_rows: int = 16_384, seed: int = 0,
               classes: int = CLASSES) -> float:
    """Write the mixture into a new store at ``path`` one chunk at a time; returns the seconds it took.

    Ids, labels and split are reserved first (as ``worth embed`` does), then each chunk's rows are generated and
    written (:meth:`EmbeddingStore.write_rows`), so at most one chunk of rows is held beyond Zarr's own buffer.
    """
    from storage.store import EmbeddingStore

    if n < classes:
        raise ValueError(f"n={n}: the mixture needs at least {classes} rows (one per class)")
    t0 = time.perf_counter()
    st = EmbeddingStore.create(path, dim=M, encoder={"name": "gaussian-mixture", "version": "1",
                                                     "params": {"seed": seed, "classes": classes}},
                               source={"spec": f"bench/scale.py n={n}", "kind": "synthetic", "fingerprint": str(seed)},
                               chunk_rows=chunk_rows, dtype=dtype, classes=[f"c{c}" for c in range(classes)])
    labels = mixture_labels(n, seed, classes)
    st.reserve([f"r{i:07d}" for i in range(n)], labels, ["train"] * n)
    for c in range(st.n_chunks):
        lo, hi = st.chunk_bounds(c)
        st.write_rows(c, lo, mixture_chunk(lo, hi, labels, seed, classes))
    return time.perf_counter() - t0


def specs(row: str, n: int, classes: int = CLASSES) -> list:
    """The :class:`flows.select.SelectionSpec` of a flow row."""
    from flows.select import SelectionSpec

    k10, k1 = max(1, round(0.10 * n)), max(1, round(0.01 * n))
    if row == "stochastic":
        return [SelectionSpec(name="vendi-stochastic", objective="vendi", k=k10, optimizer="stochastic",
                              epsilon=0.01)]
    if row == "exact":
        return [SelectionSpec(name="vendi-greedy", objective="vendi", k=k1)]
    if row == "per-class":
        return [SelectionSpec(name="vendi-per-class", objective="vendi", regime="per-class",
                              quotas=max(1, round(k10 / classes)))]
    if row == "sharded":
        return [SelectionSpec(name="vendi-greedi", objective="vendi", k=k1, regime="sharded", parts=8)]
    if row == "fl":
        return [SelectionSpec(name="fl-knn", objective="facility-location", k=k1, optimizer="lazy",
                              params={"neighbors": 50, "ann": "faiss-hnsw"})]
    raise ValueError(f"row={row!r} is not a flow row")


def flow_row(row: str, store: str, *, dask: bool = True) -> dict:
    """Run one row's selection through the flow; what the manifest says (value, evaluations, k, path).

    ``dask=False`` runs the cluster rows inline too (the smoke test: same plan, jobs and manifest, no cluster).
    """
    from flows.select import SelectOptions, run_select
    from storage import manifest as mf
    from storage.store import EmbeddingStore

    st = EmbeddingStore.open(store)
    options = SelectOptions(store=store, selections=specs(row, st.n, len(st.classes)))
    if dask and row in DASK_ROWS:
        from infra.dask import local_spec

        result = run_select(options, local_spec(n_workers=2))
    else:
        result = run_select(options)  # inline: the same body, no Prefect
    entry = result["manifests"][0]
    man = mf.read_manifest(store, entry["name"], entry["version"])
    return {"value": man["value"], "evaluations": man["timings"]["evaluations"], "k": len(man["picks"]["rows"]),
            "status": entry["status"], "manifest": entry["path"], "method": man["method"],
            "select_s": man["timings"]["select"], "read_s": man["timings"]["read"]}


def fl_reference(store: str, sample: int, K: int = 50, queries: int = 2000) -> dict:
    """Recall of the faiss graph and the value of its selection against the exact graph's, on a sample."""
    import worth
    from storage.store import EmbeddingStore
    from worth.facility.knn import neighbours

    st = EmbeddingStore.open(store)
    s = min(sample, st.n)
    X = st.rows(slice(0, s)).astype(np.float64)
    t0 = time.perf_counter()
    approx = neighbours(X, K, ann="faiss-hnsw")
    ann_s = time.perf_counter() - t0
    q = np.random.default_rng(1).choice(s, size=min(queries, s), replace=False)
    exact = np.argsort(-(X[q] @ X.T), axis=1)[:, :K]  # brute force for the query rows (cosine = L2 order)
    recall = float(np.mean([np.intersect1d(a, e).size / K for a, e in zip(approx[q], exact)]))
    k = max(1, round(0.01 * s))
    ann = worth.select(X, k, "facility-location", "lazy", neighbors=K, ann="faiss-hnsw")
    t0 = time.perf_counter()
    ref = worth.select(X, k, "facility-location", "lazy", neighbors=K)
    exact_s = time.perf_counter() - t0
    dense = [worth.score(X, sel.indices, "facility-location") for sel in (ann, ref)]
    return {"value": ann.value, "evaluations": int(ann.timings["evaluations"]), "k": k, "sample": s,
            "recall": recall, "ann_graph_s": ann_s, "exact_select_s": exact_s,
            "value_ratio": dense[0] / dense[1]}


class PeakRSS:
    """Samples the RSS of this process and its descendants until stopped: the largest single process, in bytes."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    self.peak = max(self.peak, p.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def child(row: str, store: str, fl_sample: int, *, dask: bool = True) -> dict:
    """One row in this process (the subprocess :func:`run_row` starts); its measurements."""
    t0 = time.perf_counter()
    with PeakRSS() as rss:
        out = fl_reference(store, fl_sample) if row == "fl-ref" else flow_row(row, store, dask=dask)
    return {**out, "seconds": time.perf_counter() - t0, "peak_rss_gb": rss.peak / 1e9}


def run_row(row: str, store: str, *, timeout: float, fl_sample: int = 100_000) -> dict:
    """Run ``row`` in a subprocess of its own session; a timeout kills its whole tree and is recorded."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}
        cmd = [sys.executable, __file__, "--child", row, "--store", store, "--fl-sample", str(fl_sample),
               "--out", str(out)]
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"row": row, "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0:
            return {"row": row, "error": f"failed (exit {proc.returncode}): {err.strip().splitlines()[-1:]}"}
        return {"row": row, **json.loads(out.read_text())}


def table(results: list[dict], n: int) -> str:
    """The markdown table of the rows' measurements."""
    lines = [f"| row (n = {n:,}) | k | seconds | peak RSS GB | value | gain evaluations | notes |",
             "|---|---|---|---|---|---|---|"]
    greedy = next((r["value"] for r in results if r["row"] == "exact" and "value" in r), None)
    for r in results:
        if "error" in r:
            lines.append(f"| {r['row']} | | | | | | {r['error']} |")
            continue
        note = {"sharded": (f"value / exact greedy = {r['value'] / greedy:.4f}" if greedy else "no exact row"),
                "fl-ref": (f"sample {r.get('sample', 0):,}: recall@50 {r.get('recall', 0):.3f}, dense-FL value ratio "
                           f"{r.get('value_ratio', 0):.4f}; faiss graph {r.get('ann_graph_s', 0):.0f} s, exact-graph select "
                           f"{r.get('exact_select_s', 0):.0f} s")}.get(r["row"], r.get("method", ""))
        lines.append(f"| {r['row']} | {r['k']:,} | {r['seconds']:.0f} | {r['peak_rss_gb']:.2f} | {r['value']:.6g} | "
                     f"{r['evaluations']:,} | {note} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_281_167, help="rows of the mixture (ImageNet-1K train: 1,281,167)")
    ap.add_argument("--store", required=True, help="the Zarr store (made if it does not exist)")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="storage precision")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per row before it is killed and recorded")
    ap.add_argument("--classes", type=int, default=CLASSES, help="classes of the mixture (ImageNet-1K: 1,000)")
    ap.add_argument("--fl-sample", type=int, default=100_000, help="rows of the fl-ref sample")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        Path(args.out).write_text(json.dumps(child(args.child, args.store, args.fl_sample)))
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        raise SystemExit(f"--rows: unknown {bad}; choose from {', '.join(ROWS)}")
    from storage.store import EmbeddingStore

    if not EmbeddingStore.exists(args.store):
        print(f"writing the mixture: n = {args.n:,}, m = {M}, {args.dtype} ...", flush=True)
        print(f"store written in {make_store(args.store, args.n, dtype=args.dtype, classes=args.classes):.0f} s", flush=True)
    elif EmbeddingStore.open(args.store).n != args.n:
        raise SystemExit(f"--store {args.store} holds {EmbeddingStore.open(args.store).n:,} rows, not --n {args.n:,}: "
                         "choose another path")
    results = []
    for row in rows:
        results.append(run_row(row, args.store, timeout=args.timeout, fl_sample=args.fl_sample))
        print(json.dumps(results[-1]), flush=True)
    print(table(results, args.n))


if __name__ == "__main__":
    main()
