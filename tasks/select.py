"""Prefect tasks of the select flow: thin wrappers over :func:`worth.select` and GreeDi's merge round.

A :class:`SelectJob` names its rows by *position in the store* — never by value — so what crosses the scheduler
is a few integers per row; the task opens the store by URL where it runs (a Dask worker, a thread, inline),
reads its own rows, selects, and returns a small dict (picked positions, gains, values, timings). Only the
flow's process writes manifests (``write_manifest``).

BLAS inside a task uses the Dask worker's thread share (two one-thread workers on two cores would otherwise run
four BLAS threads each). With ``device="cuda"`` the rows move to CuPy inside the task, on the worker's GPU.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage import manifest as _manifest
from storage.store import EmbeddingStore
from tasks._task import worker_threads, worth_task


@dataclass(frozen=True)
class SelectJob:
    """One call of :func:`worth.select` over rows of a store (what a task receives).

    Attributes
    ----------
    store, storage_options
        Where the rows are (a local path or an fsspec URL, readable from every worker).
    positions : int64 array
        Store rows making up ``X`` of this job, in order (``X = store.rows(positions)``).
    k, objective, params, optimizer, method, seed, epsilon
        As in :func:`worth.select`.
    quotas : dict, "balanced" or None
        Class quotas (the labels of ``positions`` are read from the store).
    labels : bool
        Pass the rows' labels to the objective even without quotas (``scaling-law`` with ``per_class=True``).
    costs, budget : str and float, or None
        The name of a cost array of the store (``EmbeddingStore.costs``) and the budget spent in it.
    init : int64 array or None
        Rows of ``X`` (indices into ``positions``) the selection is conditioned on.
    target_rows, target_path
        The target of a mutual-information selection: store rows, or a ``.npy`` of query embeddings readable
        from the worker.
    device : {"cpu", "cuda"}
        ``cuda``: run on CuPy (the worker's GPU).
    label : str
        Name of the task run (``select-<label>``).
    """

    store: str
    positions: np.ndarray
    k: int | None
    objective: str
    params: dict[str, Any]
    optimizer: str = "greedy"
    method: str = "auto"
    seed: int | None = 0
    epsilon: float = 0.01
    storage_options: dict[str, Any] = field(default_factory=dict)
    quotas: dict | str | None = None
    labels: bool = False
    costs: str | None = None
    budget: float | None = None
    init: np.ndarray | None = None
    target_rows: np.ndarray | None = None
    target_path: str | None = None
    device: str = "cpu"
    label: str = "job"


def plain(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays turned into Python numbers and lists (JSON-able); non-finite → None."""
    if isinstance(obj, dict):
        return {(k.item() if hasattr(k, "item") else k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return plain(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _host(a) -> np.ndarray:
    return np.asarray(a.get() if hasattr(a, "get") else a)


def _xp(device: str):
    """The array module for ``device``: NumPy, or CuPy when it has a GPU (else a clear error, no silent CPU)."""
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"device={device!r}: choose 'cpu' or 'cuda'")
    import cupy

    if not cupy.is_available():
        raise ValueError(f"device='cuda' but CuPy sees no GPU on {socket.gethostname()}: run on a cuda cluster "
                         "(infra.dask.cuda_spec) or pass device='cpu'")
    return cupy


def _open(job: SelectJob) -> EmbeddingStore:
    return EmbeddingStore.open(job.store, storage_options=job.storage_options or None)


def _result(sel, positions: np.ndarray, read_s: float, label: str) -> dict[str, Any]:
    picked = _host(sel.indices).astype(np.int64)
    return {
        "label": label,
        "rows": positions[picked].tolist(),
        "gains": _host(sel.gains).tolist(),
        "values": _host(sel.values).tolist(),
        "value": sel.value,
        "objective": sel.objective,
        "params": plain(sel.params),
        "method": sel.method,
        "timings": plain({**sel.timings, "read": read_s}),
        "diagnostics": plain(sel.diagnostics),
        "info": plain(sel.info),
        "process": f"{socket.gethostname()}:{os.getpid()}",
    }


def _inputs(job: SelectJob, store: EmbeddingStore, xp) -> dict[str, Any]:
    """The regime's keyword arguments of :func:`worth.select`, read from the store where the job runs."""
    kw: dict[str, Any] = {}
    if job.quotas is not None or job.labels:
        kw["labels"] = store.labels(job.positions)
    if job.quotas is not None:
        kw["quotas"] = job.quotas
    if job.costs is not None:
        kw.update(costs=store.costs(job.costs, job.positions), budget=job.budget)
    if job.init is not None:
        kw["init"] = job.init
    if job.target_rows is not None:
        kw["target"] = xp.asarray(store.rows(job.target_rows))
    elif job.target_path is not None:
        kw["target"] = xp.asarray(np.load(job.target_path, allow_pickle=False))
    return kw


def _rows(job: SelectJob, store: EmbeddingStore, xp):
    """The job's rows, read chunk by chunk into one array: float32 and normalised in place for an objective
    whose state keeps float32 rows (``worth.select`` then uses them without a copy), else in the stored dtype
    (float16: half of float32), converted once by ``worth.select`` itself."""
    import worth
    from worth.validation import normalize_rows_inplace

    if worth.get_objective(job.objective, **job.params).float32_rows and str(store.dtype) in ("float16", "float32"):
        X = store.rows(job.positions, dtype=np.float32)
        normalize_rows_inplace(X)
    else:
        X = store.rows(job.positions)
    return xp.asarray(X)


def run_select_job(job: SelectJob) -> dict[str, Any]:
    """Read the job's rows from the store and run :func:`worth.select` on them; picks as store positions."""
    from threadpoolctl import threadpool_limits

    import worth

    xp = _xp(job.device)
    t0 = time.perf_counter()
    store = _open(job)
    X = _rows(job, store, xp)
    kw = _inputs(job, store, xp)
    read_s = time.perf_counter() - t0
    with threadpool_limits(limits=worker_threads()):
        sel = worth.select(X, job.k, job.objective, job.optimizer, job.method, seed=job.seed, epsilon=job.epsilon,
                           **kw, **job.params)
    return _result(sel, job.positions, read_s, job.label)


def run_merge_job(job: SelectJob, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """GreeDi's final round over the parts' picks (:func:`worth.distributed.merge_parts`), on the whole pool.

    ``job.positions`` is the pool (sorted store rows); ``parts`` are the part jobs' results, in part order.
    """
    from threadpoolctl import threadpool_limits

    from worth.distributed import merge_parts

    xp = _xp(job.device)
    t0 = time.perf_counter()
    store = _open(job)
    X = xp.asarray(store.rows(job.positions))
    kw = _inputs(job, store, xp)
    solutions = [np.searchsorted(job.positions, np.asarray(p["rows"], dtype=np.int64)) for p in parts]
    read_s = time.perf_counter() - t0
    with threadpool_limits(limits=worker_threads()):
        sel = merge_parts(X, job.k, solutions, objective=job.objective, optimizer=job.optimizer, seed=job.seed,
                          method=job.method, epsilon=job.epsilon, **kw, **job.params)
    return _result(sel, job.positions, read_s, job.label)


def _write_manifest(store: str, name: str, record: dict[str, Any],
                    storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    return _manifest.write_manifest(store, name, record, storage_options=storage_options)


select_job = worth_task(run_select_job, name="select-job", task_run_name="select-{job.label}")
merge_job = worth_task(run_merge_job, name="merge-job", task_run_name="merge-{job.label}")
write_manifest = worth_task(_write_manifest, name="write-manifest", cache=False,
                            task_run_name="manifest-{name}")  # runs in the flow's process
