"""The select flow: selections over a Zarr embedding store, scheduled as tasks, kept as versioned manifests.

One call takes a list of :class:`SelectionSpec` (a study needs many subsets) and

1. **plans** them in the flow's process (:func:`plan_selections`): every spec is checked against the store —
   labels for the class regimes, quotas against class sizes, unfinished chunks, the ``init`` manifest, the
   target's dimension, the name — so bad input fails with a ``ValueError`` before any task starts and before
   anything is written. Each spec gets a deterministic job key; a spec whose manifest with that key exists is
   skipped (its manifest is returned);
2. **runs** the jobs on the task runner it was launched with: one :func:`tasks.select.select_job` for
   ``fixed`` and ``balanced``, one per class for ``per-class``, one per part and then a
   :func:`tasks.select.merge_job` for ``sharded`` (GreeDi). Jobs name their rows by store position; workers read
   the rows from the store themselves;
3. **writes** each spec's manifest (:mod:`storage.manifest`) from its own process as soon as that spec's jobs
   are done, so a flow killed mid-way keeps the manifests it finished and a rerun does only the rest.

A progress artifact moves as jobs finish; a markdown artifact lists the manifests written and skipped.

Launch::

    from flows.select import SelectOptions, SelectionSpec, run_select
    from infra.dask import local_spec
    spec = SelectionSpec(name="vendi-500", objective="vendi", k=500, regime="per-class", quotas=50)
    run_select(SelectOptions(store="fm.zarr", selections=[spec]), local_spec())

or ``worth select --store fm.zarr --name vendi-500 --k 500``. See ``docs/select.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from storage import manifest as mf
from storage.store import EmbeddingStore
from tasks.select import SelectJob, merge_job, plain, run_merge_job, run_select_job, select_job, write_manifest
from worth.data.sources import file_digest

PROGRESS_KEY = "select-progress"
SUMMARY_KEY = "select-summary"
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
        params = dict(worth.get_objective(spec.objective, **spec.params).params)
    except (ValueError, TypeError) as exc:
        raise _fail(spec, str(exc)) from None
    if spec.optimizer == "lazy" and not worth.objectives()[spec.objective].submodular:
        raise _fail(spec, f"optimizer='lazy' is exact only for submodular objectives and {spec.objective!r} is not; "
                    "use optimizer='greedy'")
    return params


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
    base = dict(store=options.store, storage_options=dict(options.storage_options), objective=spec.objective,
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
                                   part_picks=[len(r["rows"]) for r in results[:-1]])
    return record


def _entry(manifest: dict[str, Any], status: str, options: SelectOptions) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------- running
def _select(options: SelectOptions) -> dict[str, Any]:
    t0 = time.perf_counter()
    plans = plan_selections(options)
    so = options.storage_options or None
    store = EmbeddingStore.open(options.store, storage_options=so)
    run_id = str(flow_run.id)
    todo = [p for p in plans if p.existing is None]
    total = sum(p.n_jobs for p in todo)
    progress_id = create_progress_artifact(progress=0.0 if total else 100.0, key=PROGRESS_KEY,
                                           description=f"Selection jobs finished this run (of {total})")
    futures, owner, mine = [], {}, {}
    for p in todo:
        mine[p.key] = [select_job.submit(j) for j in p.jobs]
        if p.merge is not None:
            mine[p.key].append(merge_job.submit(p.merge, list(mine[p.key])))
        for f in mine[p.key]:
            owner[f.task_run_id] = p
        futures += mine[p.key]
    written, errors, done, finished = {}, [], dict.fromkeys(mine, 0), 0
    for fut in as_completed(futures):
        p = owner[fut.task_run_id]
        try:
            fut.result()
        except Exception as exc:  # let the other selections finish and keep their manifests, then fail
            errors.append(exc)
            continue
        finished += 1
        done[p.key] += 1
        update_progress_artifact(progress_id, 100.0 * finished / total)
        if done[p.key] == p.n_jobs:  # the plan's last job: its manifest now, not at the end of the run
            record = manifest_record(p, [f.result() for f in mine[p.key]], store, run_id)
            written[p.key] = write_manifest(options.store, p.spec.name, record, options.storage_options or None)
    entries = [_entry(p.existing, "skipped", options) if p.existing is not None else
               _entry(written[p.key], "written", options) for p in plans if p.existing is not None or p.key in written]
    seconds = time.perf_counter() - t0
    create_markdown_artifact(markdown=summary_markdown(options, entries, seconds), key=SUMMARY_KEY,
                             description=f"Selections in {options.store}")
    if errors:
        raise errors[0]
    return {"manifests": entries, "seconds": seconds, "jobs": total, "flow_run_id": run_id}


select_flow = flow(_select, name="select", description="Select subsets of an embedding store; versioned manifests.",
                   log_prints=True, validate_parameters=True)


def select_inline(options: SelectOptions) -> dict[str, Any]:
    """The same plan, jobs and manifests in this process, one job after another (no Prefect, no Dask)."""
    t0 = time.perf_counter()
    plans = plan_selections(options)
    so = options.storage_options or None
    store = EmbeddingStore.open(options.store, storage_options=so)
    entries = []
    for p in plans:
        if p.existing is not None:
            entries.append(_entry(p.existing, "skipped", options))
            continue
        results = [run_select_job(j) for j in p.jobs]
        if p.merge is not None:
            results.append(run_merge_job(p.merge, results))
        man = mf.write_manifest(options.store, p.spec.name, manifest_record(p, results, store, None),
                                storage_options=so)
        entries.append(_entry(man, "written", options))
    return {"manifests": entries, "seconds": time.perf_counter() - t0, "jobs": sum(p.n_jobs for p in plans),
            "flow_run_id": None}


def run_select(options: SelectOptions, spec=None, *, task_runner=None) -> dict[str, Any]:
    """Run the select flow on the cluster of ``spec`` (an :class:`infra.dask.ClusterSpec`) or on ``task_runner``.

    As :func:`flows.embed.run_embed`: with a Dask cluster one Prefect API serves the run
    (:func:`infra.dask.prefect_api`); with neither, Prefect's default thread runner. A ``cuda`` spec computes on
    the workers' GPUs unless ``options.device`` says otherwise.
    """
    from infra.dask import prefect_api, task_runner as runner_for

    if spec is not None and task_runner is not None:
        raise ValueError("give spec (a ClusterSpec) or task_runner, not both")
    if spec is not None and spec.kind == "cuda" and options.device is None:
        options = options.model_copy(update={"device": "cuda"})
    if spec is None and task_runner is None:
        return select_flow(options)
    if spec is None:
        return select_flow.with_options(task_runner=task_runner)(options)
    with prefect_api():
        return select_flow.with_options(task_runner=runner_for(spec))(options)


if __name__ == "__main__":  # python -m flows.select OPTIONS.json: the guard Dask worker processes need
    import sys

    from infra.dask import default_spec

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m flows.select OPTIONS.json (a SelectOptions as JSON)")
    with open(sys.argv[1]) as f:
        opts = SelectOptions.model_validate_json(f.read())
    print(json.dumps(run_select(opts, default_spec()), indent=2, default=str))
