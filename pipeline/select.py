"""The select flow's library: selection specs and options, the plan (every check against the store), the jobs
(one :func:`worth.select` over rows of the store, GreeDi's merge round) and the manifest records. No Prefect.

:func:`plan_selections` runs in the launching process before anything starts: every spec is checked against
the store — labels for the class regimes, quotas against class sizes, unfinished chunks, the ``init`` manifest,
the target's dimension, the name — so bad input fails with a ``ValueError`` before any task starts and before
anything is written. Each spec gets a deterministic job key; a spec whose manifest with that key exists is
skipped (its manifest is returned).

A :class:`SelectJob` names its rows by *position in the store* — never by value — so what crosses the scheduler
is a few integers per row; the job opens the store by URL where it runs (a Dask worker, a thread, inline), reads
its own rows, selects, and returns a small dict (picked positions, gains, values, timings). Jobs of one batch
(:mod:`pipeline.batch`) share the opened store, its labels and its decoded chunks. Only the flow's process writes
manifests. BLAS inside a job uses the Dask worker's thread share; with ``device="cuda"`` the rows move to CuPy
inside the job, on the worker's GPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.batch import shared
from pipeline.threads import worker_threads
from storage import manifest as mf
from storage.ref import StoreRef
from storage.store import EmbeddingStore
from worth.data.sources import file_digest

REGIMES = ("fixed", "balanced", "per-class", "sharded")

class SelectionSpec(BaseModel):
    """One selection to make (one manifest name): objective, size, regime."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the selection: a safe path component (letters, digits, '.', '_', '-'). "
                      "Its manifests are selections/NAME/vNNNN.json in the store; a changed job writes the next "
                      "version.")
    objective: str = Field("vendi", description="Objective name (see `worth objectives`): vendi, logdet, "
                           "facility-location, ...")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Objective parameters, e.g. {'q': 1} or {'neighbors': 50}.")
    k: int | None = Field(None, ge=1, description="Items to select. With a budget an upper bound (may be empty); "
                          "per-class takes its size from the quotas.")
    budget: float | None = Field(None, gt=0, description="Total cost the picks may spend (a knapsack), in the units "
                                 "of the store's cost array `costs`.")
    costs: str | None = Field(None, description="Name of a per-item cost array stored with the pool "
                              "(EmbeddingStore.write_costs): tokens, pixels, training steps.")
    optimizer: Literal["greedy", "lazy", "stochastic"] = Field("greedy", description="greedy, lazy (submodular "
                                                               "objectives only) or stochastic.")
    method: str = Field("auto", description="Gain method of spectral objectives: auto, oracle, secular, "
                        "closed-form, quadrature, sherman-morrison.")
    epsilon: float = Field(0.01, gt=0, lt=1, description="Accuracy of the stochastic optimiser.")
    split: str | None = Field("train", description="Select among the rows of this split (None: every row).")
    seed: int = Field(0, description="Seed of the stochastic optimiser and of the sharded regime's partition.")
    init: str | list[str] | None = Field(None, description="Rows already chosen, conditioned on: a manifest "
                                         "NAME or NAME@vN of this store, or a list of item ids.")
    target: str | list[str] | None = Field(None, description="Select by mutual information with a target: a "
                                           "list of store item ids, or the path of a .npy of query embeddings "
                                           "(readable from every worker).")
    regime: Literal["fixed", "balanced", "per-class", "sharded"] = Field(
        "fixed", description="fixed: one selection over the pool; balanced: class quotas over the pool (a "
        "partition matroid); per-class: one selection per class (Σ_c f(S_c)), one task each; sharded: GreeDi over "
        "`parts` random parts, one task per part and a merge task.")
    parts: int | None = Field(None, ge=1, description="Parts of the sharded regime.")
    quotas: int | dict[int, int] | None = Field(
        None, description="Picks per class: one number for every class, or {label: count}. per-class needs them; "
        "balanced defaults to ceil(k / classes) each.")


class SelectOptions(BaseModel):
    """Options of one select run (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="The embedding store (`worth embed`): a local path or an fsspec URL, "
                       "readable from every worker. Manifests are written into it.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options of a remote store, "
                                            "e.g. {'endpoint_url': 'http://127.0.0.1:9000'}.")
    selections: list[SelectionSpec] = Field(min_length=1, description="The selections to make; all are "
                                            "scheduled at once.")
    allow_partial: bool = Field(False, description="Select on a store still being written, among its finished rows "
                                "only (refused otherwise).")
    device: Literal["cpu", "cuda"] | None = Field(None, description="Where tasks compute: cpu (NumPy) or cuda "
                                                  "(CuPy on the worker's GPU). Default: cuda on a cuda cluster "
                                                  "spec, else cpu.")



@dataclass(frozen=True)
class SelectJob:
    """One call of :func:`worth.select` over rows of a store (what a task receives).

    Attributes
    ----------
    store : StoreRef
        Where the rows are (a local path or an fsspec URL and its options, readable from every worker).
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

    store: StoreRef
    positions: np.ndarray
    k: int | None
    objective: str
    params: dict[str, Any]
    optimizer: str = "greedy"
    method: str = "auto"
    seed: int | None = 0
    epsilon: float = 0.01
    quotas: dict | str | None = None
    labels: bool = False
    costs: str | None = None
    budget: float | None = None
    init: np.ndarray | None = None
    target_rows: np.ndarray | None = None
    target_path: str | None = None
    device: str = "cpu"
    label: str = "job"

    def __post_init__(self):  # a URL string is a ref with no options
        object.__setattr__(self, "store", StoreRef.of(self.store))


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




@dataclass(frozen=True)
class MergeJob:
    """GreeDi's final round: ``job`` over the whole pool, given the part jobs' results (in part order)."""

    job: SelectJob
    parts: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.job.label


@dataclass
class Plan:
    """What the flow will do for one spec: its key, the fixed part of its manifest, and its jobs."""

    spec: SelectionSpec
    key: str
    record: dict[str, Any]
    jobs: list[SelectJob] = field(default_factory=list)
    merge: SelectJob | None = None
    classes: list[int] = field(default_factory=list)
    existing: dict[str, Any] | None = None

    @property
    def n_jobs(self) -> int:
        return len(self.jobs) + (self.merge is not None)


# --------------------------------------------------------------------------------------------- planning
def _fail(spec: SelectionSpec, what: str) -> ValueError:
    return ValueError(f"selection {spec.name!r}: {what}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(plain(obj), sort_keys=True, default=str).encode()).hexdigest()


class _Pool:
    """What planning reads from the store once for every spec: ids, labels, split, finished rows."""

    def __init__(self, options: SelectOptions):
        so = options.storage_options or None
        if not EmbeddingStore.exists(options.store, storage_options=so):
            raise ValueError(f"store={options.store!r} is not an embedding store: make one with "
                             f"`worth embed SOURCE --store {options.store}`")
        self.store = EmbeddingStore.open(options.store, storage_options=so)
        self.store.check_metadata()  # a damaged zarr.json named here, not by the first job
        st = self.store
        if not st.is_complete and not options.allow_partial:
            raise ValueError(
                f"store {options.store!r} is still being written ({st.rows_done():,} of {st.n:,} rows embedded): "
                "finish it with `worth embed`, or pass allow_partial=True (--allow-partial) to select among the "
                "finished rows only"
            )
        self.fingerprint = mf.store_fingerprint(st)
        self.ids = st.ids()
        self.labels = st.labels()
        self.split = st.split()
        self.finished = st.finished_mask()
        self.row_of = {i: r for r, i in enumerate(self.ids.tolist())}
        #: job key → (name, version) of the latest manifest made with it: what a rerun skips
        damaged: list = []
        self.made = {m["key"]: (m["name"], m["version"])
                     for m in mf.list_manifests(options.store, storage_options=so, damaged=damaged)}
        #: job key → the damaged manifest file that still shows it (a truncated record of that job)
        self.damaged = {exc.key: exc for exc in damaged if exc.key}

    def rows_of_ids(self, spec: SelectionSpec, ids: list[str], what: str) -> np.ndarray:
        missing = [i for i in ids if i not in self.row_of]
        if missing:
            raise _fail(spec, f"{what} names ids that are not in the store: {missing[:5]} ({len(missing)} in all)")
        return np.asarray([self.row_of[i] for i in ids], dtype=np.int64)


def _pool_rows(spec: SelectionSpec, pool: _Pool) -> np.ndarray:
    mask = pool.finished.copy()
    if spec.split is not None:
        mask &= pool.split == spec.split
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        splits = sorted(set(pool.split.tolist()))
        raise _fail(spec, f"no finished rows in split {spec.split!r} (splits of the store: {splits}); pass "
                    "split= one of them, or split=None for every row")
    return rows


def _objective(spec: SelectionSpec) -> dict[str, Any]:
    import worth

    try:
        obj = worth.get_objective(spec.objective, **spec.params)
        if spec.optimizer == "lazy" and not worth.objectives()[spec.objective].submodular:
            raise ValueError(f"optimizer='lazy' is exact only for submodular objectives and {spec.objective!r} is "
                             "not; use optimizer='greedy'")
        # the rest of worth.select's option checks (method, optimizer, epsilon, target), here, not on a worker
        worth.check_options(spec.objective, spec.optimizer, spec.method, epsilon=spec.epsilon, target=spec.target,
                            **spec.params)
    except (ValueError, TypeError) as exc:
        raise _fail(spec, str(exc)) from None
    return dict(obj.params)


def _quotas(spec: SelectionSpec, labels: np.ndarray) -> dict[int, int] | None:
    """The spec's quotas as {class: count}, checked against the pool's classes and their sizes."""
    if spec.quotas is None:
        return None
    classes, sizes = np.unique(labels, return_counts=True)
    size = dict(zip(classes.tolist(), sizes.tolist()))
    quotas = ({c: int(spec.quotas) for c in size} if isinstance(spec.quotas, int) else
              {int(c): int(q) for c, q in spec.quotas.items()})
    for c, q in quotas.items():
        if c not in size:
            raise _fail(spec, f"quotas name class {c}, which has no rows in the pool (classes: {sorted(size)})")
        if q < 0:
            raise _fail(spec, f"quota {q} of class {c} must be a non-negative count")
        if q > size[c]:
            raise _fail(spec, f"quota {q} of class {c} is larger than the class ({size[c]} rows in the pool): "
                        f"lower it to at most {size[c]}")
    return quotas


def _plan_one(spec: SelectionSpec, options: SelectOptions, pool: _Pool, device: str) -> Plan:
    import worth
    from worth.distributed import partition

    params = _objective(spec)
    rows = _pool_rows(spec, pool)
    st = pool.store
    regime = spec.regime
    base = dict(store=StoreRef.of(options.store, options.storage_options or None), objective=spec.objective,
                params=params, optimizer=spec.optimizer, method=spec.method, seed=spec.seed, epsilon=spec.epsilon,
                device=device, labels=bool(params.get("per_class")))
    # -- regime and its arguments
    labels = pool.labels[rows]
    if regime in ("balanced", "per-class") and (labels < 0).any():
        raise _fail(spec, f"regime {regime!r} needs the class of every row, and {int((labels < 0).sum()):,} rows of "
                    "the pool have none (label -1): use regime 'fixed' or 'sharded', or a store with labels")
    if regime in ("fixed", "sharded") and spec.quotas is not None:
        raise _fail(spec, f"quotas apply to regimes 'balanced' and 'per-class', not {regime!r}")
    quotas = _quotas(spec, labels) if regime in ("balanced", "per-class") else None
    if regime == "per-class":
        if quotas is None:
            raise _fail(spec, "regime 'per-class' needs quotas: one number for every class or {label: count}")
        if spec.k is not None and spec.k != sum(quotas.values()):
            raise _fail(spec, f"k={spec.k} disagrees with the quotas (they sum to {sum(quotas.values())}): "
                        "leave k out under per-class")
        if spec.budget is not None or spec.init is not None:
            raise _fail(spec, "regime 'per-class' takes quotas only (no budget, no init)")
    if regime != "sharded" and spec.parts is not None:
        raise _fail(spec, f"parts={spec.parts} applies to regime 'sharded' only")
    if regime == "sharded":
        if spec.parts is None:
            raise _fail(spec, "regime 'sharded' needs parts (the number of GreeDi parts), e.g. parts=8")
        if spec.parts > rows.size:
            raise _fail(spec, f"parts={spec.parts} exceeds the pool's {rows.size:,} rows")
        if spec.init is not None or spec.target is not None:
            raise _fail(spec, "regime 'sharded' does not take init or target yet: use regime 'fixed'")
    # -- size: k or a budget over a stored cost array
    cost_digest = None
    if (spec.budget is None) != (spec.costs is None):
        raise _fail(spec, "budget and costs go together: name the store's cost array with costs= and the total "
                    "with budget=")
    if spec.costs is not None:
        if spec.costs not in st.cost_names():
            raise _fail(spec, f"the store has no cost array {spec.costs!r} (it has: {st.cost_names() or 'none'}); "
                        "write one with EmbeddingStore.write_costs")
        cost_values = st.costs(spec.costs, rows)
        if spec.budget < cost_values.min():
            raise _fail(spec, f"budget={spec.budget} is below every item's cost (the cheapest is "
                        f"{cost_values.min():g})")
        cost_digest = hashlib.sha256(cost_values.tobytes()).hexdigest()
    if spec.k is None and spec.budget is None and regime != "per-class":
        raise _fail(spec, "give k (the number of items) or a budget with costs")
    if spec.k is not None and regime != "per-class" and spec.k > rows.size:
        raise _fail(spec, f"k={spec.k} exceeds the pool's {rows.size:,} rows (split {spec.split!r})")
    if regime == "balanced" and quotas is None and spec.k is None:
        raise _fail(spec, "regime 'balanced' without quotas splits k among the classes: give k")
    # -- init: a manifest of this store, or ids
    init_ref, init_local = None, None
    if spec.init is not None:
        if isinstance(spec.init, str):
            man = mf.read_manifest(options.store, spec.init, storage_options=options.storage_options or None)
            init_ids = list(man["picks"]["ids"])
            init_ref = {"manifest": f"{man['name']}@v{man['version']}", "key": man["key"], "count": len(init_ids)}
        else:
            init_ids = list(spec.init)
            init_ref = {"ids": init_ids}
        init_rows = pool.rows_of_ids(spec, init_ids, "init")
        outside = np.setdiff1d(init_rows, rows)
        if outside.size:
            raise _fail(spec, f"init holds {outside.size} rows outside the pool (split {spec.split!r}, finished "
                        f"rows), e.g. {pool.ids[outside[:3]].tolist()}: condition on rows of the pool")
        init_local = np.searchsorted(rows, init_rows)
    # -- target: store ids or a .npy of queries
    target_ref, target_rows, target_path = None, None, None
    if isinstance(spec.target, str):
        if not spec.target.endswith(".npy") or not os.path.isfile(spec.target):
            raise _fail(spec, f"target={spec.target!r} is not a .npy file: give the path of a .npy of query "
                        "embeddings, or a list of store ids")
        shape = np.load(spec.target, mmap_mode="r", allow_pickle=False).shape
        if len(shape) != 2 or shape[1] != st.dim:
            raise _fail(spec, f"target {spec.target!r} has shape {shape}; it must be (n_targets, {st.dim}), rows in "
                        "the store's embedding space")
        target_path = os.path.abspath(spec.target)
        target_ref = {"path": target_path, "sha256": file_digest(spec.target).hex(), "shape": list(shape)}
    elif spec.target is not None:
        target_rows = pool.rows_of_ids(spec, list(spec.target), "target")
        target_ref = {"ids": list(spec.target)}
    # -- key: what the result depends on
    key = _digest({
        "name": spec.name, "store": pool.fingerprint, "regime": regime, "objective": spec.objective,
        "params": params, "optimizer": spec.optimizer, "method": spec.method, "epsilon": spec.epsilon,
        "k": spec.k, "budget": spec.budget, "costs": [spec.costs, cost_digest], "quotas": quotas,
        "split": spec.split, "seed": spec.seed, "parts": spec.parts, "init": init_ref, "target": target_ref,
        "partial": not st.is_complete, "library": worth.__version__,
    })
    record = {
        "key": key,
        "library": {"name": "worth", "version": worth.__version__},
        "store": {"url": options.store, "fingerprint": pool.fingerprint, "n": st.n, "rows_done": st.rows_done(),
                  "dim": st.dim, "split": spec.split, "pool_rows": int(rows.size), "complete": st.is_complete},
        "regime": regime, "objective": spec.objective, "params": params, "optimizer": spec.optimizer,
        "method": spec.method, "seed": spec.seed, "epsilon": spec.epsilon, "k": spec.k, "budget": spec.budget,
        "costs": spec.costs, "quotas": None if quotas is None else {str(c): q for c, q in quotas.items()},
        "partition": None, "init": init_ref, "target": target_ref,
    }
    plan = Plan(spec, key, record)
    job = dict(base, init=init_local, target_rows=target_rows, target_path=target_path)
    if spec.costs is not None:
        job.update(costs=spec.costs, budget=spec.budget)
    if regime == "fixed":
        plan.jobs = [SelectJob(positions=rows, k=spec.k, label=spec.name, **job)]
    elif regime == "balanced":
        plan.jobs = [SelectJob(positions=rows, k=spec.k, quotas=quotas if quotas is not None else "balanced",
                               label=spec.name, **job)]
    elif regime == "per-class":
        plan.classes = [c for c, q in sorted(quotas.items()) if q > 0]
        plan.jobs = [SelectJob(positions=rows[labels == c], k=quotas[c], label=f"{spec.name}-class-{c}", **job)
                     for c in plan.classes]
    else:
        parts = partition(int(rows.size), spec.parts, spec.seed)
        plan.record["partition"] = {"parts": spec.parts, "seed": spec.seed, "sizes": [int(p.size) for p in parts]}
        plan.jobs = [SelectJob(positions=rows[p], k=None if spec.k is None else min(spec.k, int(p.size)),
                               label=f"{spec.name}-part-{i}", **job) for i, p in enumerate(parts)]
        plan.merge = SelectJob(positions=rows, k=spec.k, label=f"{spec.name}-merge", **job)
    if key not in pool.made and key in pool.damaged:
        raise _fail(spec, f"this job's earlier record is damaged: {pool.damaged[key]}")
    if key in pool.made:
        name, version = pool.made[key]
        plan.existing = mf.read_manifest(options.store, name, version, storage_options=options.storage_options or None)
    return plan


def plan_selections(options: SelectOptions) -> list[Plan]:
    """Check every spec against the store and plan its jobs; a ``ValueError`` before anything runs or is written."""
    names = [s.name for s in options.selections]
    for name in names:
        mf.check_name(name)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"selection names {dup} appear more than once in one run: give every spec its own name")
    pool = _Pool(options)
    device = options.device or "cpu"
    return [_plan_one(spec, options, pool, device) for spec in options.selections]


# --------------------------------------------------------------------------------------------- manifests
def manifest_record(plan: Plan, results: list[dict[str, Any]], store: EmbeddingStore,
                    flow_run_id: str | None) -> dict[str, Any]:
    """The manifest of a finished plan: its fixed part plus the picks of its job results (in job order)."""
    per_class = plan.spec.regime == "per-class"
    final = results if per_class else results[-1:]
    rows = np.asarray([r for res in final for r in res["rows"]], dtype=np.int64)
    labels = store.labels(rows) if rows.size else np.zeros(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    picks = {"ids": store.ids(rows).tolist() if rows.size else [], "rows": rows.tolist(),
             "gains": [g for res in final for g in res["gains"]],
             "values": [v for res in final for v in res["values"]]}
    if per_class:
        picks["classes"] = labels.tolist()
    jobs = [{"label": r["label"], "process": r["process"], **r["timings"]} for r in results]
    record = dict(plan.record)
    record.update(
        created=mf.now(),
        method=final[0]["method"] if final else plan.spec.method,
        value=float(math.fsum(res["value"] for res in final)),
        picks=picks,
        class_counts={str(c): int(n) for c, n in zip(classes.tolist(), counts.tolist()) if c >= 0} or None,
        timings={"select": float(sum(r["timings"]["total"] for r in results)),
                 "read": float(sum(r["timings"]["read"] for r in results)),
                 "evaluations": int(sum(r["timings"]["evaluations"] for r in results)), "jobs": jobs},
        diagnostics={r["label"]: r["diagnostics"] for r in results if r["diagnostics"]},
        info=results[-1]["info"] if not per_class else {},
        flow_run_id=flow_run_id,
        mlflow_run_id=None,
    )
    if per_class:
        record["per_class"] = {str(c): {"k": len(r["rows"]), "value": r["value"]}
                               for c, r in zip(plan.classes, results)}
    if plan.spec.regime == "sharded":
        info = results[-1]["info"]
        record["partition"] = dict(record["partition"], round=info.get("round"), part_values=info.get("part_values"),
                                   part_picks=[len(r["rows"]) for r in results[:-1]], ground=info.get("ground"))
    return record


def entry(manifest: dict[str, Any], status: str, options: SelectOptions) -> dict[str, Any]:
    return {"name": manifest["name"], "version": manifest["version"], "status": status, "key": manifest["key"],
            "k": len(manifest["picks"]["ids"]), "value": manifest["value"], "objective": manifest["objective"],
            "regime": manifest["regime"],
            "path": mf.manifest_path(options.store, manifest["name"], manifest["version"],
                                     storage_options=options.storage_options or None)}


def summary_markdown(options: SelectOptions, entries: list[dict[str, Any]], seconds: float) -> str:
    """The flow's closing report: one row per manifest, written or skipped."""
    lines = [f"# Selections in `{options.store}`", "",
             "| name | version | status | regime | objective | k | value | manifest |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {e['name']} | v{e['version']} | {e['status']} | {e['regime']} | {e['objective']} | {e['k']} | "
              f"{e['value']:.6g} | `{e['path']}` |" for e in entries]
    written = sum(e["status"] == "written" for e in entries)
    lines += ["", f"{written} written, {len(entries) - written} skipped (already made with the same key), "
              f"in {seconds:.1f} s."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- jobs
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


def _store_key(job: SelectJob) -> tuple:
    return job.store.url, json.dumps(dict(job.store.storage_options), sort_keys=True, default=str)


def _open(job: SelectJob) -> EmbeddingStore:
    """The job's store, opened once per batch."""
    return shared(("store", *_store_key(job)),
                  lambda: EmbeddingStore.open(job.store))


class _Chunks:
    """Decoded chunks of a store's embeddings, kept for the jobs of one batch (a bounded LRU, 256 MiB).

    Each chunk is read exactly as :meth:`EmbeddingStore.rows` reads it (its finished rows, checked against the
    chunk's digest), so the rows handed to a job are the same bytes; a batch of per-class jobs whose classes
    are spread over every chunk decodes each chunk once instead of once per job.
    """

    LIMIT_BYTES = 256 << 20

    def __init__(self, store: EmbeddingStore):
        self.store = store
        self.done = store.chunks_done()
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.held: tuple[np.ndarray, np.ndarray] | None = None  # (sorted positions, their rows): see hold()
        per_chunk = store.chunk_rows * store.dim * np.dtype(store.dtype).itemsize
        self.limit = max(1, self.LIMIT_BYTES // max(1, per_chunk))

    def _chunk(self, chunk: int) -> np.ndarray:
        if chunk in self.cache:
            self.cache.move_to_end(chunk)
            return self.cache[chunk]
        lo = chunk * self.store.chunk_rows
        values = self.store.rows(np.arange(lo, lo + int(self.done[chunk]), dtype=np.int64))
        self.cache[chunk] = values
        while len(self.cache) > self.limit:
            self.cache.popitem(last=False)
        return values

    def hold(self, positions: np.ndarray) -> None:
        """Read the rows ``positions`` (sorted, distinct) in one pass — each chunk decoded once — and serve later
        :meth:`rows` calls within them from memory. Why: a batch of per-class jobs each reads rows from every
        chunk; past the LRU's size (at 1.28 M rows: 79 chunks against 16 kept) job after job cycles through
        the chunks in the same order and every read misses, so each job decoded the whole store again."""
        self.held = None
        self.held = (positions, self.rows(positions))

    def rows(self, positions: np.ndarray) -> np.ndarray:
        idx = np.asarray(positions, dtype=np.int64).ravel()
        if self.held is not None and idx.size:
            pos, values = self.held
            at = np.minimum(np.searchsorted(pos, idx), pos.size - 1)
            if (pos[at] == idx).all():
                return values[at]  # a fresh array: safe for the caller to change in place
        out = np.empty((idx.size, self.store.dim), dtype=self.store.dtype)
        chunk_of = idx // self.store.chunk_rows
        for chunk in np.unique(chunk_of).tolist():
            sel = chunk_of == chunk
            out[sel] = self._chunk(chunk)[idx[sel] - chunk * self.store.chunk_rows]
        return out


def _rows(job: SelectJob, store: EmbeddingStore, positions: np.ndarray) -> np.ndarray:
    return shared(("chunks", *_store_key(job)), lambda: _Chunks(store)).rows(positions)


#: The most a batch holds of its jobs' rows, read in one pass (:func:`hold_batch_rows`), in the stored dtype.
HOLD_BYTES = 1 << 30


def hold_batch_rows(jobs: list[SelectJob]) -> None:
    """Before a batch of select jobs runs: read the union of their rows once per store (each chunk decoded once)
    when they are several and it fits :data:`HOLD_BYTES`; each job then takes its rows from it — the same bytes
    its own read gives. A per-class batch of 63 ImageNet classes holds 80,000 rows (82 MB in float16)."""
    by_store: dict[tuple, list[SelectJob]] = {}
    for job in jobs:
        by_store.setdefault(_store_key(job), []).append(job)
    for group in by_store.values():
        if len(group) < 2:
            continue
        store = _open(group[0])
        union = np.unique(np.concatenate([np.asarray(j.positions, dtype=np.int64).ravel() for j in group]))
        if union.size * store.dim * np.dtype(store.dtype).itemsize <= HOLD_BYTES:
            shared(("chunks", *_store_key(group[0])), lambda: _Chunks(store)).hold(union)


def _job_rows(job: SelectJob, store: EmbeddingStore) -> np.ndarray:
    """The job's rows: float32 and normalised in place for an objective whose state keeps float32 rows
    (``worth.select`` then uses them without a copy), else in the stored dtype (float16: half of float32),
    converted once, chunk by chunk, by ``worth.select`` itself — never the whole pool in float64 beside it."""
    import worth
    from worth.validation import normalize_rows_inplace

    X = _rows(job, store, job.positions)  # a fresh array (never a cached chunk): safe to change in place
    params = {k: v for k, v in job.params.items() if k != "normalize"}
    if str(X.dtype) in ("float16", "float32") and worth.get_objective(job.objective, **params).float32_rows:
        X = X.astype(np.float32, copy=False)
        if job.params.get("normalize", True):
            normalize_rows_inplace(X)
    return X


def _labels(job: SelectJob, store: EmbeddingStore, positions: np.ndarray) -> np.ndarray:
    return shared(("labels", *_store_key(job)), store.labels)[positions]


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
        kw["labels"] = _labels(job, store, job.positions)
    if job.quotas is not None:
        kw["quotas"] = job.quotas
    if job.costs is not None:
        kw.update(costs=store.costs(job.costs, job.positions), budget=job.budget)
    if job.init is not None:
        kw["init"] = job.init
    if job.target_rows is not None:
        kw["target"] = xp.asarray(_rows(job, store, job.target_rows))
    elif job.target_path is not None:
        kw["target"] = xp.asarray(np.load(job.target_path, allow_pickle=False))
    return kw


def run_select_job(job: SelectJob) -> dict[str, Any]:
    """Read the job's rows from the store and run :func:`worth.select` on them; picks as store positions."""
    from threadpoolctl import threadpool_limits

    import worth

    xp = _xp(job.device)
    t0 = time.perf_counter()
    store = _open(job)
    X = xp.asarray(_job_rows(job, store))
    kw = _inputs(job, store, xp)
    read_s = time.perf_counter() - t0
    with threadpool_limits(limits=worker_threads()):
        sel = worth.select(X, job.k, job.objective, job.optimizer, job.method, seed=job.seed, epsilon=job.epsilon,
                           **kw, **job.params)
    return _result(sel, job.positions, read_s, job.label)


def run_merge_job(merge: MergeJob) -> dict[str, Any]:
    """GreeDi's final round over the parts' picks (:func:`worth.distributed.merge_parts`).

    ``merge.job.positions`` is the pool (sorted store rows); ``merge.parts`` are the part jobs' results, in part
    order. Where the round needs only the picked rows (:func:`worth.distributed.merge_needs_pool`: a spectral
    objective without a budget) it reads just those — 102,496 rows of an ImageNet-sized pool of 1.28 M, whose
    float64 copy would be 5.2 GB — and passes the pool's size; otherwise the whole pool.
    """
    job, parts = merge.job, merge.parts
    from threadpoolctl import threadpool_limits

    from worth.distributed import merge_needs_pool, merge_parts

    xp = _xp(job.device)
    t0 = time.perf_counter()
    store = _open(job)
    picked = [np.asarray(p["rows"], dtype=np.int64) for p in parts]
    whole = merge_needs_pool(job.objective, job.params, quotas=job.quotas, costs=job.costs, budget=job.budget,
                             init=job.init, target=job.target_rows if job.target_rows is not None else job.target_path)
    if whole:
        sizes = {}
    else:
        sizes = {"pool_size": int(job.positions.size)}
        job = replace(job, positions=np.unique(np.concatenate(picked)) if picked else job.positions[:0])
    X = xp.asarray(_rows(job, store, job.positions))
    kw = _inputs(job, store, xp)
    solutions = [np.searchsorted(job.positions, p) for p in picked]
    read_s = time.perf_counter() - t0
    with threadpool_limits(limits=worker_threads()):
        sel = merge_parts(X, job.k, solutions, objective=job.objective, optimizer=job.optimizer, seed=job.seed,
                          method=job.method, epsilon=job.epsilon, **sizes, **kw, **job.params)
    return _result(sel, job.positions, read_s, job.label)


def select_run_name(options: SelectOptions) -> str:
    """The flow run's name: ``select-STORE-NAME`` (``+N`` more when it makes several selections)."""
    from pipeline.embed import store_name

    names = [spec.name for spec in options.selections]
    more = f"+{len(names) - 1}" if len(names) > 1 else ""
    return f"select-{store_name(options.store)}-{names[0]}{more}"
