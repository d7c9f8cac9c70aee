"""ImageNet-1K-shaped selection through the select flow, from a Zarr store: time, peak RSS, value, evaluations.

The data is a Gaussian mixture of the ImageNet-1K train shape — ``n`` unit rows (default 1,281,167), m = 512,
1,000 classes of uneven size (:func:`class_sizes`: 732 to 1,300 rows a class at n = 1.28 M, as ImageNet's): row = class mean (a random unit vector) + a shared rank-32 factor + isotropic
noise, normalised (within-class cosine ≈ 0.5, between-class ≈ 0.2 from the shared factor). It is generated one
store chunk at a time (:func:`make_store`: one chunk in memory, deterministic per chunk) into an
:class:`storage.store.EmbeddingStore`.

Rows of the table (``--rows``; k from n, as the issue's ImageNet targets are). Each flow row is run as a user
would: ``worth select --store S --name bench-ROW-TAG ...`` on the CLI's default runner (a LocalCluster; ``--runner``
to change it), in its own subprocess:

=============  ==========================================================================================
row            selection
=============  ==========================================================================================
stochastic     Vendi, stochastic greedy ε = 0.01, k = 10 % of n
exact          Vendi, greedy, k = 1 % of n (the keyed lazy route: exact greedy picks)
per-class      Vendi per class, quotas round(0.01 n / 1000) each (13 at ImageNet size)
sharded        GreeDi, P = 8 parts + merge, Vendi greedy, k = 1 %; value / the ``exact`` row's
fl             facility location kNN mode (K = 50, graph by faiss HNSW: ``ann="faiss-hnsw"``), lazy, k = 1 %
fl-ref         (Python, no flow) on the first ``--fl-sample`` rows: recall@50 of the faiss graph against brute
               force on 2,000 query rows (:func:`worth.facility.knn.knn_recall`); up to 20,000 rows also the
               dense facility-location value of the faiss-graph selection / the exact-graph selection's
=============  ==========================================================================================

Every row runs in its own session; the whole process is timed from start to exit, and its process tree (the
flow's process, the Prefect server, the Dask scheduler and workers) is sampled from the parent every 0.2 s
(psutil) for its peak RSS: the largest single process and the tree's sum. A ``--timeout`` kills the tree; the row
reads "timed out after X s" with the peak it had reached. ``--ref REV`` runs the same flow rows first on git
revision REV (a temporary worktree, imported through PYTHONPATH) and prints both tables and a side-by-side one
with the ratios. ``--hnsw-sweep`` measures HNSW settings (build + search seconds, recall@50) on the first n rows; ``--recall`` the fl
row's own graph (the kept settings) on the first n rows — all 1.28 M at ImageNet size.

    python bench/scale.py --n 100000 --store /tmp/scale-100k.zarr --ref main
    python bench/scale.py --n 1281167 --store /tmp/scale-in1k.zarr --rows exact,stochastic --timeout 1500
    python bench/scale.py --n 100000 --store /tmp/scale-100k.zarr --hnsw-sweep
    python bench/scale.py --n 1281167 --store /tmp/scale-in1k.zarr --recall     # the 1.28 M graph's recall
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


def class_sizes(n: int, classes: int = CLASSES) -> np.ndarray:
    """Uneven class sizes summing to ``n``, shaped like ImageNet-1K's train split (732 to 1,300 images a class,
    mean 1,281, most classes full): class ``c`` gets a share ∝ ``1 − 0.437·(1 − c/(C−1))²⁹``, so the smallest
    is 0.563 of the largest (732/1300), the mean 0.986 of it (1281/1300) and nine in ten classes are within 5 %
    of it; rounding is settled on the largest classes."""
    t = np.linspace(0.0, 1.0, classes)
    share = 1.0 - 0.437 * (1.0 - t) ** 29
    sizes = np.floor(share / share.sum() * n).astype(np.int64)
    sizes[np.argsort(-share, kind="stable")[: n - int(sizes.sum())]] += 1
    if sizes.min() < 1:
        raise ValueError(f"n={n}: too few rows for {classes} uneven classes (the smallest would be empty)")
    return sizes


def mixture_labels(n: int, seed: int, classes: int = CLASSES) -> np.ndarray:
    """Labels of uneven classes (:func:`class_sizes`), in a random order."""
    codes = np.repeat(np.arange(classes), class_sizes(n, classes))
    return np.random.default_rng([seed, 2**32 - 1]).permutation(codes).astype(np.int64)


def make_store(path: str, n: int, *, dtype: str = "float16", chunk_rows: int = 16_384, seed: int = 0,
               classes: int = CLASSES) -> float:
    """Write the mixture into a new store at ``path`` one chunk at a time; returns the seconds it took.

    Ids, labels and split are reserved first (as ``worth embed`` does), then each chunk's rows are generated and
    written (:meth:`EmbeddingStore.write_rows`), so at most one chunk of rows is held beyond Zarr's own buffer.
    """
    from storage.store import EmbeddingStore

    if n < 2 * classes:
        raise ValueError(f"n={n}: the mixture needs at least {2 * classes} rows (two per class, uneven)")
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


def write_npz(path: str, n: int, *, seed: int = 0, classes: int = CLASSES, chunk_rows: int = 65_536) -> float:
    """The mixture as a precomputed-vector pool ``path`` (.npz, uncompressed: ``x`` float32, ``y`` labels),
    generated one chunk at a time into a memory-mapped .npy and stored into the zip as it is; seconds taken."""
    import zipfile

    t0 = time.perf_counter()
    labels = mixture_labels(n, seed, classes)
    tmp = f"{path}.x.npy"
    x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, M))
    for a in range(0, n, chunk_rows):
        x[a:a + chunk_rows] = mixture_chunk(a, min(n, a + chunk_rows), labels, seed, classes)
    x.flush()
    del x
    import io

    y = io.BytesIO()
    np.save(y, labels)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.write(tmp, "x.npy")
        zf.writestr("y.npy", y.getvalue())
    os.unlink(tmp)
    return time.perf_counter() - t0


def embed_row(npz: str, store: str, *, timeout: float, runner: str = "dask", dtype: str = "float32",
              code: str | None = None) -> dict:
    """``worth embed NPZ --store STORE --encoder pixels --dtype DTYPE`` as a whole process, peak RSS of its tree."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "flows.cli.main", "embed", npz, "--store", store, "--encoder", "pixels",
               "--dtype", dtype, "--runner", runner]
        return {"row": "embed", **_measure(cmd, tmp, timeout, code), "command": " ".join(cmd[2:])}


def _measure(cmd: list[str], tmp: str, timeout: float, code: str | None) -> dict:
    """Run ``cmd`` in its own session, timed whole; peak RSS of its tree; ``error`` on failure or timeout."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(tmp, code), cwd=code or None, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    error = None
    with PeakRSS(proc.pid) as rss:
        try:
            stdout, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                error = f"failed (exit {proc.returncode}): {(err.strip() or stdout.strip()).splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            rss.sample()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            error = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t0
    for p in psutil.process_iter():  # nothing of the row's session may outlive it (orphaned workers)
        try:
            if os.getsid(p.pid) == proc.pid:
                p.kill()
        except (psutil.Error, OSError):
            pass
    out = {"seconds": seconds, "peak_rss_gb": rss.peak / 1e9, "tree_rss_gb": rss.peak_tree / 1e9}
    return {**out, "error": error} if error else out


def cli_args(row: str, n: int, name: str, classes: int = CLASSES) -> list[str]:
    """The ``worth select --store S --name NAME ...`` arguments of a flow row (after ``--store S``)."""
    k10, k1 = max(1, round(0.10 * n)), max(1, round(0.01 * n))
    base = ["--name", name, "--objective"]
    if row == "stochastic":
        return base + ["vendi", "--k", str(k10), "--optimizer", "stochastic"]  # epsilon: the spec's 0.01
    if row == "exact":
        return base + ["vendi", "--k", str(k1)]
    if row == "per-class":
        return base + ["vendi", "--regime", "per-class", "--quotas", str(max(1, round(k1 / classes)))]
    if row == "sharded":
        return base + ["vendi", "--k", str(k1), "--regime", "sharded", "--parts", "8"]
    if row == "fl":
        return base + ["facility-location", "--k", str(k1), "--optimizer", "lazy", "-p", "neighbors=50",
                       "-p", "ann=faiss-hnsw"]
    raise ValueError(f"row={row!r} is not a flow row")


def fl_reference(store: str, sample: int, K: int = 50, queries: int = 2000, exact_select: bool | None = None) -> dict:
    """Recall@K of the faiss graph (:func:`worth.facility.knn.knn_recall`, ``queries`` rows against brute
    force) on the first ``sample`` rows, and — where the exact graph is affordable (``exact_select``, default
    ``sample <= 20,000``) — the dense facility-location value of the faiss-graph selection / the exact-graph
    selection's (k = 1 % of the sample)."""
    import worth
    from storage.store import EmbeddingStore
    from worth.facility.knn import knn_recall, neighbours

    st = EmbeddingStore.open(store)
    s = min(sample, st.n)
    X = st.rows(slice(0, s), dtype=np.float32)
    t0 = time.perf_counter()
    approx = neighbours(X, K, ann="faiss-hnsw")
    ann_s = time.perf_counter() - t0
    recall = knn_recall(X, approx, sample=queries)
    del approx
    k = max(1, round(0.01 * s))
    out = {"k": k, "sample": s, "recall": recall["recall"], "recall_min": recall["min"], "ann_graph_s": ann_s}
    ann = worth.select(X, k, "facility-location", "lazy", neighbors=K, ann="faiss-hnsw")
    out.update(value=ann.value, evaluations=int(ann.timings["evaluations"]))
    if exact_select if exact_select is not None else s <= 20_000:
        t0 = time.perf_counter()
        ref = worth.select(X, k, "facility-location", "lazy", neighbors=K)
        out["exact_select_s"] = time.perf_counter() - t0
        dense = [worth.score(X, sel.indices, "facility-location") for sel in (ann, ref)]
        out["value_ratio"] = dense[0] / dense[1]
    return out


def graph_recall(store: str, n: int, K: int = 50, queries: int = 2000) -> dict:
    """The fl row's graph itself on the first ``n`` rows (all of them at ImageNet size): faiss HNSW with the kept
    parameters (:data:`worth.facility.knn.HNSW`), its build-and-search seconds, and recall@K of ``queries`` seeded
    random rows against brute force (:func:`worth.facility.knn.knn_recall`) — the fl row's selection is not run."""
    from storage.store import EmbeddingStore
    from worth.facility.knn import knn_recall, neighbours

    X = EmbeddingStore.open(store).rows(slice(0, n), dtype=np.float32)
    t0 = time.perf_counter()
    nbr = neighbours(X, K, ann="faiss-hnsw")
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = knn_recall(X, nbr, sample=queries)
    return {"n": int(X.shape[0]), "K": K, "queries": queries, "graph_s": graph_s, "recall": r["recall"],
            "recall_min": r["min"], "recall_s": time.perf_counter() - t0}


def hnsw_sweep(store: str, n: int, K: int = 50, queries: int = 1000,
               grid=((16, 40, 2), (32, 40, 1), (32, 40, 2), (32, 80, 2), (48, 80, 2))) -> list[dict]:
    """Build time, search time and recall@K of HNSW settings ``(M, efConstruction, efSearch / K)`` on the first
    ``n`` rows: how :data:`worth.facility.knn.HNSW` was chosen (run it on a quiet box: the times are the point)."""
    from storage.store import EmbeddingStore
    from worth.facility.knn import knn_recall, neighbours

    X = EmbeddingStore.open(store).rows(slice(0, n), dtype=np.float32)
    out = []
    for M_, efc, per_k in grid:
        t0 = time.perf_counter()
        nbr = neighbours(X, K, ann="faiss-hnsw", hnsw={"M": M_, "ef_construction": efc, "ef_search_per_k": per_k,
                                                       "ef_search_min": K})
        sec = time.perf_counter() - t0
        r = knn_recall(X, nbr, sample=queries)
        out.append({"M": M_, "ef_construction": efc, "ef_search": per_k * K, "seconds": sec, "recall": r["recall"],
                    "recall_min": r["min"]})
        print(json.dumps(out[-1]), flush=True)
    return out


class PeakRSS:
    """Samples the RSS of process ``pid`` (default this one) and its descendants until stopped.

    ``peak``: the largest single process; ``peak_tree``: the largest sum over the tree at one sample (the
    flow's process, the Prefect server, the Dask scheduler and workers together), in bytes.
    """

    def __init__(self, pid: int | None = None, every: float = 0.2):
        import psutil

        self.proc, self.every, self.peak, self.peak_tree = psutil.Process(pid), every, 0, 0
        self._own = pid is None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        import psutil

        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.peak = max(self.peak, rss)
        self.peak_tree = max(self.peak_tree, total)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._own:
            self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def manifest_row(store: str, name: str) -> dict:
    """What the latest manifest of ``name`` says: value, evaluations, k, method, the job's read/select seconds."""
    from storage import manifest as mf

    man = mf.read_manifest(store, name)
    t = man.get("timings", {})
    return {"value": man["value"], "evaluations": t.get("evaluations", 0), "k": len(man["picks"]["rows"]),
            "method": man["method"], "select_s": t.get("select"), "read_s": t.get("read"), "name": name,
            "version": man["version"]}


def child(row: str, store: str, fl_sample: int) -> dict:
    """The fl-ref row in this process (the subprocess :func:`run_row` starts for it); its measurements."""
    t0 = time.perf_counter()
    out = fl_reference(store, fl_sample)
    return {**out, "seconds": time.perf_counter() - t0}


def _env(tmp: str, code: str | None) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if code:
        env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cli_module(code: str | None) -> str:
    """The CLI's module in checkout ``code`` (default this one): ``flows.cli.main``, or ``cli.main`` before the
    CLI moved (a ``--ref`` revision older than the move)."""
    root = Path(code) if code else Path(__file__).resolve().parents[1]
    return "flows.cli.main" if (root / "flows" / "cli" / "main.py").exists() else "cli.main"


def run_row(row: str, store: str, *, timeout: float, fl_sample: int = 100_000, runner: str = "dask",
            code: str | None = None, tag: str | None = None) -> dict:
    """Run ``row`` as a user would, in a subprocess of its own session, timed as a whole process.

    A flow row is ``worth select --store STORE --name NAME ... --runner RUNNER`` (default: the CLI's default
    runner, a LocalCluster); ``fl-ref`` is :func:`child` in Python. The subprocess's tree (flow process, Prefect
    server, Dask scheduler and workers) is sampled from here for its peak RSS, so a row killed at ``timeout``
    still reports the peak it reached. ``code``: a checkout whose packages the subprocess imports instead
    (``--ref``: the same rows on another revision). ``tag`` makes the manifest name unique to this run, so a
    rerun of the bench selects again instead of finding the manifest of an earlier run.
    """
    tag = tag or f"{int(time.time())}"
    name = f"bench-{row}-{tag}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        if row == "fl-ref":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", row, "--store", store,
                   "--fl-sample", str(fl_sample), "--out", str(out)]
        else:
            n = _store_n(store)
            cmd = [sys.executable, "-m", _cli_module(code), "select", "--store", store,
                   *cli_args(row, n["n"], name, n["classes"]), "--runner", runner]
        measured = {"row": row, **_measure(cmd, tmp, timeout, code)}
        if "error" in measured:
            return measured
        result = json.loads(out.read_text()) if row == "fl-ref" else manifest_row(store, name)
        return {**result, **measured, "command": " ".join(cmd[2:] if row != "fl-ref" else cmd[1:])}


def _store_n(store: str) -> dict:
    from storage.store import EmbeddingStore

    st = EmbeddingStore.open(store)
    return {"n": st.n, "classes": len(st.classes or []) or CLASSES}


def _note(r: dict, greedy: float | None) -> str:
    if r["row"] == "sharded":
        return f"value / exact greedy = {r['value'] / greedy:.4f}" if greedy else "no exact row"
    if r["row"] == "fl-ref":
        text = f"sample {r.get('sample', 0):,}: recall@50 {r.get('recall', 0):.3f} (worst row {r.get('recall_min', 0):.2f})"
        if "value_ratio" in r:
            text += f", dense-FL value ratio {r['value_ratio']:.4f}"
        return text + f"; faiss graph {r.get('ann_graph_s', 0):.0f} s"
    return r.get("method", "")


def table(results: list[dict], n: int) -> str:
    """The markdown table of the rows' measurements (peak RSS: largest process / whole process tree)."""
    lines = [f"| row (n = {n:,}) | k | seconds | peak RSS GB (process / tree) | value | gain evaluations | notes |",
             "|---|---|---|---|---|---|---|"]
    greedy = next((r["value"] for r in results if r["row"] == "exact" and "value" in r), None)
    for r in results:
        rss = f"{r.get('peak_rss_gb', 0):.2f} / {r.get('tree_rss_gb', 0):.2f}"
        if "error" in r:
            lines.append(f"| {r['row']} | | {r.get('seconds', 0):.0f} | {rss} | | | {r['error']} |")
            continue
        lines.append(f"| {r['row']} | {r['k']:,} | {r['seconds']:.0f} | {rss} | {r['value']:.6g} | "
                     f"{r['evaluations']:,} | {_note(r, greedy)} |")
    return "\n".join(lines)


def side_by_side(before: list[dict], after: list[dict], n: int, ref: str) -> str:
    """Before (``--ref`` revision) and after (this checkout), row by row, with the ratios."""
    lines = [f"| row (n = {n:,}) | before s ({ref}) | after s | after / before | before RSS GB | after RSS GB | "
             "value after / before |", "|---|---|---|---|---|---|---|"]
    for b, a in zip(before, after):
        def cell(r, key, fmt):
            return r["error"] if "error" in r and key == "seconds" else (fmt.format(r[key]) if key in r else "")
        ratio = f"{a['seconds'] / b['seconds']:.2f}" if "error" not in a and "error" not in b else ""
        value = f"{a['value'] / b['value']:.6f}" if "value" in a and "value" in b and b["value"] else ""
        lines.append(f"| {a['row']} | {cell(b, 'seconds', '{:.0f}')} | {cell(a, 'seconds', '{:.0f}')} | {ratio} | "
                     f"{cell(b, 'peak_rss_gb', '{:.2f}')} | {cell(a, 'peak_rss_gb', '{:.2f}')} | {value} |")
    return "\n".join(lines)


def ref_checkout(rev: str, where: str) -> str:
    """A detached worktree of git revision ``rev`` of this repository at ``where`` (for ``--ref``)."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--force", where, rev], check=True,
                   stdout=subprocess.DEVNULL)
    return where


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_281_167, help="rows of the mixture (ImageNet-1K train: 1,281,167)")
    ap.add_argument("--store", required=True, help="the Zarr store (made if it does not exist)")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="storage precision")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per row before it is killed and recorded")
    ap.add_argument("--classes", type=int, default=CLASSES, help="classes of the mixture (ImageNet-1K: 1,000)")
    ap.add_argument("--fl-sample", type=int, default=100_000, help="rows of the fl-ref sample")
    ap.add_argument("--runner", default="dask", choices=("dask", "threads", "inline"),
                    help="worth select --runner (dask: the CLI's default, a LocalCluster)")
    ap.add_argument("--ref", help="a git revision: run the same rows on it too (a temporary worktree), side by side")
    ap.add_argument("--hnsw-sweep", action="store_true", help="only the HNSW parameter sweep on the first --n rows")
    ap.add_argument("--recall", action="store_true", help="only the fl row's graph on the first --n rows: its build "
                    "seconds and recall@50 of 2,000 rows against brute force")
    ap.add_argument("--embed", metavar="NPZ", help="only `worth embed NPZ --encoder pixels` into --store (the mixture "
                    "is written to NPZ first if it does not exist): seconds and peak RSS")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.embed:
        if not Path(args.embed).exists():
            print(f"pool written in {write_npz(args.embed, args.n, classes=args.classes):.0f} s", flush=True)
        r = embed_row(args.embed, args.store, timeout=args.timeout, runner=args.runner, dtype=args.dtype)
        print(json.dumps(r))
        print(f"| embed (n = {args.n:,}, {args.dtype}) | {r['seconds']:.0f} s | {r['peak_rss_gb']:.2f} / "
              f"{r['tree_rss_gb']:.2f} GB | {r.get('error', '')} |")
        return
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
    elif EmbeddingStore.open(args.store).n != args.n and not (args.hnsw_sweep or args.recall):
        raise SystemExit(f"--store {args.store} holds {EmbeddingStore.open(args.store).n:,} rows, not --n {args.n:,}: "
                         "choose another path")
    if args.recall:
        print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
        r = graph_recall(args.store, args.n)
        print(json.dumps(r))
        print(f"| graph (n = {r['n']:,}, K = {r['K']}) | {r['graph_s']:.0f} s | recall@{r['K']} {r['recall']:.4f} "
              f"(min {r['recall_min']:.2f}) over {r['queries']:,} rows | {r['recall_s']:.0f} s |")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    if args.hnsw_sweep:
        for r in hnsw_sweep(args.store, args.n):
            print(f"| {r['M']} | {r['ef_construction']} | {r['ef_search']} | {r['seconds']:.0f} | {r['recall']:.3f} |")
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    tag = f"{int(time.time())}"

    def run_all(code, label, which):
        out = []
        for row in which:
            out.append(run_row(row, args.store, timeout=args.timeout, fl_sample=args.fl_sample, runner=args.runner,
                               code=code, tag=f"{label}-{tag}"))
            print(json.dumps(out[-1]), flush=True)
        return out

    before = None
    if args.ref:
        with tempfile.TemporaryDirectory() as tmp:
            code = ref_checkout(args.ref, str(Path(tmp) / "ref"))
            try:  # fl-ref is a Python row of this checkout's bench, not a flow: after only
                before = run_all(code, "before", [r for r in rows if r != "fl-ref"])
            finally:
                subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "worktree", "remove", "--force",
                                code], check=False)
    results = run_all(None, "after", rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(table(results, args.n))
    if before is not None:
        print()
        print(table(before, args.n).replace("| row (n", f"| row ({args.ref}, n", 1))
        print()
        print(side_by_side(before, [r for r in results if r["row"] != "fl-ref"], args.n, args.ref))


if __name__ == "__main__":
    main()
