"""The appraisal study as a flow: which data-value objective predicts held-out accuracy, tracked in MLflow.

:func:`plan_study` runs first, in the launching process, and refuses bad input before anything runs: a config
with unknown keys or an objective (or parameter) the registry refuses, a store that is missing, incomplete or
unlabelled, a held-out fraction outside (0, 0.9] or different from the split recorded with the store, a k the
pool (or, in the balanced regime, a class) cannot serve, a tracking store with no place for artifacts.

The flow then records the held-out split with the store (once), opens the study's MLflow experiment (creating
the tracking database in this process, before any worker starts), and maps the subsets over the task
runner: one realisation per distinct subset (``fixed`` and ``budget`` select alike), its scores, and one training
per spec. Only this process writes to MLflow: each subset's child run is opened, logged and finished as its
result arrives; a Prefect progress artifact moves meanwhile. At the end the tables, figures and ``report.md`` are written
(:func:`worth.appraisal.aggregate`) and logged to the parent run, and the report becomes a markdown artifact.

Resume: every run is tagged with a deterministic key (:func:`child_key`: the subset spec, the training
settings and the pool's identity). A rerun reuses FINISHED children's metrics (no retraining), retrains the
rest — reopening by run id a run left unfinished (killed while being logged, or FAILED) — and never creates a
second run for a key.

Launch::

    from flows.study import StudyOptions, run_study
    from infra.dask import launch_target
    run_study(StudyOptions(store="digits.zarr", quick=True), **launch_target("dask"))

or ``worth study --store digits.zarr --quick``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.dask import ClusterOptions
from storage.holdout import Holdout, record
from tasks import track
from tasks.train import (check_store, pool_identity, realise_subset, resolve_holdout, score_subset_task,
                         train_subset_task)
from worth.appraisal import StudyConfig, SubsetSpec, aggregate, load_config, make_specs, result_row
from worth.appraisal.config import check_holdout_fraction
from worth.appraisal.design import check_design

PROGRESS_KEY = "study-progress"
REPORT_KEY = "study-report"
#: Settings of the study that change what a subset's run measures: part of every child run's key.
TRAINING_FIELDS = ("objectives", "model", "epochs", "steps", "batch_size", "lr", "weight_decay", "hidden",
                   "threads", "device")


class StudyOptions(BaseModel):
    """Options of one appraisal study (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="The Zarr embedding store to appraise (a local path or an fsspec URL), made by "
                       "`worth embed`; it must be complete and labelled.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for a remote store, e.g. {'endpoint_url': '...'}.")
    config: str | None = Field(None, description="Path of a study.yaml (keys of worth.appraisal.StudyConfig). One of "
                               "config, config_data or quick.")
    config_data: dict[str, Any] | None = Field(
        None, description="The study config inline, as the mapping a study.yaml holds (a deployment parameter).")
    quick: bool = Field(False, description="The --quick preset (StudyConfig.quick(): a few minutes on digits).")
    holdout_fraction: float | None = Field(
        None, description="Share of each class held out when the store has no held-out split of its own; default "
        "the config's holdout_fraction (0.2). Must lie in (0, 0.9] and equal the split already recorded with the "
        "store, if any. Ignored for a store with a 'test' split (Fashion-MNIST).")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite beside a local store "
        "(<store>.mlflow/mlflow.db).")
    experiment: str | None = Field(None, description="MLflow experiment name; default 'worth-study-<store name>'.")
    artifact_location: str | None = Field(
        None, description="Where a new experiment's artifacts go; default beside a SQLite tracking file (needed "
        "for other database URIs; a tracking server keeps its own).")
    out_dir: str | None = Field(
        None, description="Where report.md, results.json and the figures are written; default "
        "<store>.study/<study key> beside a local store, ./worth-study-<study key> for a remote one.")

    @model_validator(mode="after")
    def _one_config(self) -> "StudyOptions":
        given = [n for n, v in (("config", self.config), ("config_data", self.config_data), ("quick", self.quick))
                 if v]
        if len(given) > 1:
            raise ValueError(f"give one of config, config_data or quick, not {' and '.join(given)}")
        return self


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def child_key(spec: SubsetSpec, config: StudyConfig, pool: dict) -> str:
    """A subset run's key: its spec, the training settings and the pool's identity (not the store's path)."""
    training = {f: config.to_dict()[f] for f in TRAINING_FIELDS}
    return _digest({"spec": spec.key, "training": training, "pool": pool})


def study_key(config: StudyConfig, pool: dict) -> str:
    """The parent run's key: the whole config and the pool's identity."""
    return _digest({"config": config.to_dict(), "pool": pool})


@dataclass
class StudyPlan:
    """Everything decided before any work: what :func:`plan_study` checked and resolved."""

    options: StudyOptions
    config: StudyConfig
    holdout: Holdout
    holdout_is_new: bool
    pool: dict
    n_pool: int
    n_test: int
    n_classes: int
    specs: list[SubsetSpec]
    key: str
    tracking_uri: str
    experiment: str
    artifact_location: str | None
    out_dir: str

    @property
    def holdout_desc(self) -> dict:
        return self.holdout.describe()


def resolve_config(options: StudyOptions) -> StudyConfig:
    """The study's config from ``options`` (a path, inline data or the quick preset; default the quick one)."""
    if options.config:
        if not Path(options.config).is_file():
            raise ValueError(f"--config {options.config!r}: no such file; pass a study.yaml (see study-quick.yaml).")
        return load_config(options.config)
    if options.config_data is not None:
        return StudyConfig.from_dict(options.config_data)
    return StudyConfig.quick()


def plan_study(options: StudyOptions) -> StudyPlan:
    """Check every input and decide the study, writing nothing (the held-out split is recorded by the flow).

    Raises
    ------
    ValueError, FileNotFoundError
        With the argument at fault and the fix, before any selection, training or tracking.
    """
    config = resolve_config(options)
    if config.model == "cnn":
        raise ValueError("model='cnn' trains on raw images, but the study trains on the store's embeddings: use "
                         "model: mlp or linear (the pixels encoder stores raw pixels as embeddings).")
    fraction = check_holdout_fraction(options.holdout_fraction if options.holdout_fraction is not None
                                      else config.holdout_fraction)
    so = options.storage_options or None
    check_store(options.store, so)
    holdout, is_new = resolve_holdout(options.store, fraction, config.holdout_seed, so)
    store_labels = _labels(options.store, so)
    labelled = store_labels >= 0
    pool_labels = store_labels[labelled & ~holdout.mask]
    n_test = int((labelled & holdout.mask).sum())
    if n_test == 0:
        raise ValueError(f"store {options.store!r} has no labelled held-out row to evaluate on; raise "
                         "--holdout-fraction.")
    check_design(config, pool_labels)
    uri = track.resolve_tracking_uri(options.store, options.tracking_uri)
    name = options.experiment or f"worth-study-{Path(options.store.rstrip('/')).name}"
    location = track.resolve_artifact_location(uri, name, options.artifact_location)
    pool = pool_identity(options.store, holdout.describe(), so)
    key = study_key(config, pool)
    if options.out_dir:
        out_dir = str(Path(options.out_dir).resolve())
    elif track.is_local(options.store):
        out_dir = str(track.beside_store(options.store, ".study") / key)
    else:
        out_dir = str(Path(f"worth-study-{key}").resolve())
    from storage.store import EmbeddingStore

    store = EmbeddingStore.open(options.store, storage_options=so)
    n_classes = len(store.classes) if store.classes else int(store_labels.max()) + 1
    return StudyPlan(options, config, holdout, is_new, pool, int(pool_labels.size), n_test, n_classes,
                     make_specs(config, n_pool=int(pool_labels.size)), key, uri, name, location, out_dir)


def _labels(url: str, so) -> np.ndarray:
    from storage.store import EmbeddingStore

    return EmbeddingStore.open(url, storage_options=so).labels()


# ------------------------------------------------------------------------------------------ MLflow records
def _optimizer(spec: SubsetSpec) -> tuple[str, str]:
    """(optimizer, method) of how the subset was selected, as the run's params say it."""
    sampled = "exact" if spec.sample is None else f"sampled-{spec.sample}"
    if spec.kind == "coreset":
        return spec.objective, "class-balanced" if spec.balanced else "uniform"
    if spec.kind == "max":
        return "greedy", "auto"
    if spec.kind == "min":
        return "greedy-minimise", sampled
    if spec.kind == "mix":
        return f"greedy+{spec.filler}", sampled if spec.filler == "min" else "random"
    return "random", "class-balanced" if spec.balanced else "uniform"


def child_params(spec: SubsetSpec, config: StudyConfig) -> dict[str, Any]:
    """A subset run's params (strings in MLflow): what was selected, and how it was trained."""
    optimizer, method = _optimizer(spec)
    budget = {"steps_budget": config.steps} if spec.regime == "budget" else {"epochs": config.epochs}
    return {"objective": spec.objective or "random", "kind": spec.kind, "k": spec.k, "regime": spec.regime,
            "seed": spec.seed, "fraction": spec.fraction, "filler": spec.filler or "-",
            "objective_params": json.dumps(spec.params, sort_keys=True), "optimizer": optimizer, "method": method,
            "model": config.model, "batch_size": config.batch_size, "lr": config.lr, **budget}


def child_metrics(scores: dict, evaluation: dict) -> dict[str, float]:
    """``score.NAME`` for every objective, accuracy, loss, ``accuracy.class.C``, train seconds, rows."""
    out = {f"score.{name}": v for name, v in scores.items()}
    out.update(accuracy=evaluation["accuracy"], loss=evaluation["loss"], train_seconds=evaluation["train_seconds"],
               n_train=evaluation["n_train"])
    out.update({f"accuracy.class.{c}": v for c, v in enumerate(evaluation["per_class_accuracy"])})
    return out


def row_from_run(spec: SubsetSpec, run: track.RunRecord, objectives, n_classes: int) -> dict:
    """The results-table row of a FINISHED run, rebuilt from what it logged (NaN where nothing was logged)."""
    m = run.metrics
    scores = {name: m.get(f"score.{name}", math.nan) for name in objectives}
    evaluation = {"accuracy": m["accuracy"],
                  "per_class_accuracy": [m.get(f"accuracy.class.{c}", math.nan) for c in range(n_classes)],
                  "loss": m["loss"], "train_seconds": m["train_seconds"], "steps": int(run.params["steps"]),
                  "n_train": int(m["n_train"]), "model": run.params["model"], "device": run.params["device"],
                  "extra": {}}
    return result_row(spec, scores, evaluation)


def correlation_metrics(table: list[dict]) -> list[tuple[str, float, int]]:
    """``(name, value, step=k)``: ``spearman.OBJECTIVE.REGIME.kK`` (all subsets), ``….random``, ``….moderate``,
    and the same for ``kendall``: one metric per (objective, regime, k), so the run page shows every one (a name
    without k, logged at step k, showed only the last k)."""
    out = []
    for c in table:
        tail = "" if c["subsets"] == "all" else f".{c['subsets']}"
        for stat in ("spearman", "kendall"):
            out.append((f"{stat}.{c['objective']}.{c['regime']}.k{int(c['k'])}{tail}", c[stat], int(c["k"])))
    return out


# ------------------------------------------------------------------------------------------ running
class _Done:
    """A finished computation with the interface of a Prefect future (``result()``), for the inline runner."""

    def __init__(self, fn, args):
        try:
            self._value, self._error = fn(*[a.result() if isinstance(a, _Done) else a for a in args]), None
        except Exception as exc:  # kept, raised by result() like a failed future
            self._value, self._error = None, exc

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


class _PrefectRuntime:
    """Tasks on the flow's task runner; progress and report as Prefect artifacts."""

    def submit(self, task, *args):
        return task.submit(*args)

    def completed(self, futures):
        from prefect.futures import as_completed

        return as_completed(futures)

    def progress(self, total: int, description: str):
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        pid = create_progress_artifact(progress=0.0 if total else 100.0, key=PROGRESS_KEY, description=description)
        return lambda pct: update_progress_artifact(pid, pct)

    def report(self, markdown: str, description: str) -> None:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=markdown, key=REPORT_KEY, description=description)

    def run_id(self) -> str | None:
        from prefect.runtime import flow_run

        return str(flow_run.id)


class _InlineRuntime:
    """Every step in this process, one after the other, no Prefect (``--runner inline``)."""

    def submit(self, task, *args):
        return _Done(task.fn, args)

    def completed(self, futures):
        return iter(futures)

    def progress(self, total: int, description: str):
        return lambda pct: None

    def report(self, markdown: str, description: str) -> None:
        pass

    def run_id(self) -> None:
        return None


def conduct(options: StudyOptions, runtime, on_result=None) -> dict[str, Any]:
    """Plan, record the split, track, map the subsets, log each result, aggregate: the body of the flow.

    ``runtime`` runs the tasks (:class:`_PrefectRuntime` inside the flow, :class:`_InlineRuntime` without
    Prefect); ``on_result(done, total, name)`` is called after each subset (the CLI's progress line).
    """
    t0 = time.perf_counter()
    plan = plan_study(options)
    cfg, so = plan.config, options.storage_options or None
    if plan.holdout_is_new:
        record(options.store, plan.holdout.mask, fraction=plan.holdout.fraction, seed=plan.holdout.seed,
               storage_options=so)
    tracker = track.Tracker.open(plan.tracking_uri, plan.experiment, plan.artifact_location)
    known = tracker.runs_by_key()
    parent_params = {"store": options.store, "n_pool": plan.n_pool, "n_test": plan.n_test,
                     "n_classes": plan.n_classes, "holdout": json.dumps(plan.holdout_desc, sort_keys=True),
                     "encoder": json.dumps(plan.pool["encoder"], sort_keys=True), "subsets": len(plan.specs),
                     **{f"config.{k}": json.dumps(v, sort_keys=True) for k, v in cfg.to_dict().items()}}
    parent_id = tracker.start(plan.key, f"study-{plan.key[:8]}", params=parent_params,
                              tags={"worth.kind": "study"}, existing=known.get(plan.key))
    tracker.log_json(parent_id, cfg.to_dict(), "study.json")

    rows: dict[str, dict] = {}
    todo: list[tuple[SubsetSpec, str]] = []
    for spec in plan.specs:
        ck = child_key(spec, cfg, plan.pool)
        run = known.get(ck)
        if run is not None and run.finished:
            rows[spec.key] = row_from_run(spec, run, cfg.objectives, plan.n_classes)
        else:
            todo.append((spec, ck))
    reused = len(rows)

    h = plan.holdout_desc
    subsets, scores, meta, futures = {}, {}, {}, []
    for spec, ck in todo:
        if spec.subset_key not in subsets:
            subsets[spec.subset_key] = runtime.submit(realise_subset, options.store, h, spec.to_dict(), so)
            scores[spec.subset_key] = runtime.submit(score_subset_task, options.store, h, subsets[spec.subset_key],
                                                     cfg.objectives, so)
        fut = runtime.submit(train_subset_task, options.store, h, spec.to_dict(), subsets[spec.subset_key],
                             cfg.to_dict(), so)
        futures.append(fut)
        meta[id(fut)] = (spec, ck)
    total = len(plan.specs)
    progress = runtime.progress(len(todo), f"Subsets trained and logged ({len(todo)} to train, {reused} reused)")
    errors, processes = [], set()
    for i, fut in enumerate(runtime.completed(futures)):
        spec, ck = meta[id(fut)]
        # the run is opened when its result is in, so the UI lists finished subsets as they come and a kill
        # leaves at most the one being logged unfinished (reopened by its id on the next run)
        run_id = tracker.start(ck, spec.name, params=child_params(spec, cfg), parent_id=parent_id,
                               existing=known.get(ck),
                               tags={"worth.kind": spec.kind, "worth.subset_key": spec.subset_key})
        try:
            evaluation = dict(fut.result())
            subset = subsets[spec.subset_key].result()
            subset_scores = scores[spec.subset_key].result()
        except Exception as exc:  # the other subsets finish and are logged; the flow fails at the end
            tracker.finish(run_id, "FAILED")
            errors.append((spec.name, exc))
            continue
        processes.add(evaluation.pop("process"))
        tracker.log_metrics(run_id, child_metrics(subset_scores, evaluation))
        tracker.log_params(run_id, {"steps": evaluation["steps"], "device": evaluation["device"]})
        row = result_row(spec, subset_scores, evaluation)
        tracker.log_json(run_id, {"run": spec.name, "key": ck, "spec_key": spec.key, "spec": spec.to_dict(),
                                  "store": options.store, "holdout": h, "rows": subset["rows"], "ids": subset["ids"],
                                  "pool_indices": subset["indices"], "scores": subset_scores,
                                  "evaluation": evaluation}, "subset.json")
        tracker.finish(run_id)
        rows[spec.key] = row
        progress(100.0 * (i + 1) / len(todo))
        if on_result is not None:
            on_result(reused + i + 1, total, spec.name)
    if errors:
        tracker.finish(parent_id, "FAILED")
        name, exc = errors[0]
        raise RuntimeError(f"{len(errors)} of {len(todo)} subsets failed (first: {name}: {exc}); the others are "
                           "logged: rerun the study to retry only the failed ones.") from exc

    table = [rows[s.key] for s in plan.specs]
    out = aggregate(table, cfg, plan.out_dir, title=f"Appraisal study of {options.store}")
    parent = known.get(plan.key)
    if todo or parent is None or not parent.finished:  # a finished study rerun with nothing new logs nothing twice
        tracker.log_metrics(parent_id, correlation_metrics(out["tables"]["correlation"]))
    figures = [p for v in out["figures"].values() for p in (v if isinstance(v, list) else [v])]
    tracker.log_files(parent_id, [out["report"], out["html"], out["results"], *figures])
    tracker.finish(parent_id)
    seconds = time.perf_counter() - t0
    report_md = Path(out["report"]).read_text()
    where = (f"\n\n---\nReport: `{out['report']}`; MLflow experiment `{plan.experiment}` at `{plan.tracking_uri}` "
             f"(parent run `{parent_id}`): `{track.ui_command(plan.tracking_uri)}`.")
    runtime.report(report_md + where, f"Appraisal study of {options.store}")
    return {"report": str(out["report"]), "results": str(out["results"]), "out_dir": plan.out_dir,
            "tracking_uri": plan.tracking_uri, "experiment": plan.experiment, "experiment_id": tracker.experiment_id,
            "parent_run_id": parent_id, "study_key": plan.key, "subsets": total, "trained": len(todo),
            "reused": reused, "processes": sorted(processes), "seconds": seconds,
            "ui": track.ui_command(plan.tracking_uri), "flow_run_id": runtime.run_id()}


def _study(options: StudyOptions) -> dict[str, Any]:
    return conduct(options, _PrefectRuntime())


def _flow():
    from prefect import flow

    return flow(_study, name="study", description="The appraisal study: subsets selected, scored, trained and "
                "evaluated, correlations reported, every run tracked in MLflow.", log_prints=True,
                validate_parameters=True)


def run_study(options: StudyOptions, spec=None, *, task_runner=None, on_result=None) -> dict[str, Any]:
    """Run the study on the cluster of ``spec``, on ``task_runner``, or — with neither — inline in this process.

    The keyword arguments are those :func:`infra.dask.launch_target` returns: ``{"spec": ClusterSpec}`` (Dask,
    with one Prefect API for the launcher and its workers), ``{"task_runner": ...}`` (Prefect, tasks in this
    process) or ``{}`` (no Prefect: every step here, one after the other). ``on_result`` is used inline only.
    """
    from infra.dask import prefect_api, task_runner as runner_for

    if spec is not None and task_runner is not None:
        raise ValueError("give spec (a ClusterSpec) or task_runner, not both")
    plan = plan_study(options)  # every check before Prefect, Dask or MLflow start
    track.Tracker.open(plan.tracking_uri, plan.experiment, plan.artifact_location)  # the database, before workers
    if spec is None and task_runner is None:
        return conduct(options, _InlineRuntime(), on_result)
    if spec is None:
        return study_flow.with_options(task_runner=task_runner)(options)
    with prefect_api():
        return study_flow.with_options(task_runner=task_runner or runner_for(spec))(options)


study_flow = _flow()


def _deployed(options: StudyOptions, cluster: ClusterOptions = ClusterOptions()) -> dict[str, Any]:
    return run_study(options, **cluster.launch())


def _deployed_flow():
    from prefect import flow

    return flow(_deployed, name="study-deployed", description="The deployed study: binds the cluster given as a "
                "parameter and runs the study flow on it.", log_prints=True, validate_parameters=True)


study_deployed = _deployed_flow()


if __name__ == "__main__":  # python -m flows.study STORE [CONFIG]: guard needed by Dask worker processes
    import sys

    from infra.dask import default_spec

    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: python -m flows.study STORE [study.yaml]")
    opts = StudyOptions(store=args[0], config=args[1] if len(args) > 1 else None, quick=len(args) == 1)
    print(json.dumps(run_study(opts, default_spec()), indent=2, default=str))
