"""The appraisal study as a flow: which data-value objective predicts held-out accuracy, tracked in MLflow.

:func:`plan_study` runs first, in the launching process, and refuses bad input before anything runs (the pool's
checks are :func:`pipeline.study.plan_pool`; here: a tracking store with no place for artifacts).

The flow then records the held-out split with the store (once), opens the study's MLflow experiment (creating
the tracking database in this process, before any worker starts), and realises, scores and trains the distinct
subsets of the specs still to run in one stream over the runtime (:mod:`flows.runtime`; :class:`_Subsets`):
every greedy path once (branching runs per objective: each balanced path leaves the unconstrained one where a
class fills), the mixtures completed by the minimiser, every subset's scores in batches, and the training of
each subset once per spec that uses it — each job submitted as soon as its inputs are in, the paths first, so
random subsets train while the paths run and no phase waits for the slowest job of the one before. Every other
subset (prefixes of the stored paths, seeded draws, random completions) is cut in this process. Only this
process writes to MLflow: each spec's child run is opened, logged and finished as its scores and training are
in; a progress artifact per phase moves meanwhile. At the end the tables, figures
and ``report.md`` are written (:func:`worth.appraisal.aggregate`) and logged to the parent run, and the report
becomes a markdown artifact.

Resume: a rerun reuses FINISHED children's metrics (no retraining), retrains the rest — reopening by run id a run
left unfinished (killed while being logged, or FAILED) — and never creates a second run for a key.

Launch::

    from flows.study import StudyOptions, run_study
    from infra.dask import launch_target
    run_study(StudyOptions(store="digits.zarr", quick=True), **launch_target("dask"))

or ``worth study --store digits.zarr --quick``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from flows.runtime import deployed, launch, make_flow
import numpy as np

from pipeline.study import (StudyOptions, StudyPlan, SubsetSpec, TrainJob, child_key, child_metrics,  # noqa: F401
                            cached_paths, child_params, correlation_metrics, dense_facility, needs_fill, open_store, path_entry,
                            plan_fill_jobs, plan_path_jobs, plan_pool, plan_score_jobs, row_from_run, score_entry,
                            study_folder, study_key, study_run_name, work_folder)
from storage.checkpoint import Checkpoint
from storage.holdout import record
from tasks import track
from tasks.train import fill_jobs, path_jobs, score_jobs, train_jobs
from worth.appraisal import PathKey, aggregate, result_row, subset_from_paths
from worth.appraisal.paths import path_key, unit_keys

PROGRESS_KEY = "study-progress"
REPORT_KEY = "study-report"


def plan_study(options: StudyOptions) -> StudyPlan:
    """:func:`pipeline.study.plan_pool`, and where the study is tracked and reported; writes nothing.

    Raises
    ------
    ValueError, FileNotFoundError
        With the argument at fault and the fix, before any selection, training or tracking (a tracking store that
        cannot work: :class:`tasks.track.TrackingStoreError`, a ``ValueError``).
    """
    plan = plan_pool(options)
    uri = track.resolve_tracking_uri(options.store, options.tracking_uri, check=True)  # probed: a dead server, a bad file
    name = options.experiment or f"worth-study-{Path(options.store.rstrip('/')).name}"
    location = track.resolve_artifact_location(uri, name, options.artifact_location)
    if options.out_dir:
        out_dir = str(Path(options.out_dir).resolve())
    elif track.is_local(options.store):
        out_dir = str(study_folder(options.store) / plan.key)  # where the night's objective=auto finds it
    else:
        out_dir = str(Path(f"worth-study-{plan.key}").resolve())
    return dataclasses.replace(plan, tracking_uri=uri, experiment=name, artifact_location=location, out_dir=out_dir)


#: Which waiting batches a slot takes first: the long poles (paths), then the work that unlocks training (fills),
#: then scores, then training. A path job never waits behind training; training fills every slot a path leaves.
PRIORITY = {"paths": 3, "fills": 2, "scores": 1, "train": 0}


class _Subsets:
    """The distinct subsets of the specs still to run, moved through realisation, scoring and training at once.

    One stream over the runtime (:meth:`flows.runtime.Runtime.stream`) carries every job: the greedy paths
    (:func:`pipeline.study.plan_path_jobs`) first, and — as soon as what a subset is cut from is in — its
    completion by the minimiser (:func:`pipeline.study.plan_fill_jobs`), its scores (:func:`pipeline.study.
    plan_score_jobs`: the spectral ones with the subsets of the same finished job; dense facility location in
    batches of a third of the subsets, whose GEMMs against the union of their rows then share most rows) and its
    training (one job per distinct subset, once per spec that uses it). A random subset needs no path, so it
    trains while the paths run; the last path job no longer holds every other phase back. Every other subset
    (prefixes of the stored paths, seeded draws, random completions) is cut in this process.

    The work is what the phases did one after another — the same path and completion jobs, the scores in other
    batches (dense facility location's up to an inner product's rounding in a GEMM of another shape, as
    :mod:`worth.appraisal.scoring` says; bit for bit in ``tests/study/test_study_fast_path.py``). Paths,
    completions and scores are kept in the pool's checkpoint as each job ends, and ``log(key, subset, trains)``
    is called once per subset when both its scores and its training are in; ``fail(key, error)`` once per
    subset whose path, completion, scores or training job failed.
    """

    def __init__(self, plan: StudyPlan, groups: dict[str, list], runtime, log, fail):
        self.plan, self.groups, self.runtime, self.log, self.fail_cb = plan, groups, runtime, log, fail
        self.slots = runtime.slots()
        work = work_folder(plan)
        self.saved = {kind: Checkpoint(work / kind) for kind in ("paths", "fills", "scores")}
        self.paths: dict[PathKey, np.ndarray] = cached_paths(self.saved["paths"].load())
        self.filled = self.saved["fills"].load()
        self.known = self.saved["scores"].load()
        self.specs = {key: g[0][0] for key, g in groups.items()}  # one spec per distinct subset
        self.state: dict[str, str] = {}  # subset key → "filling", "ready", "logged" or "failed"
        self.indices: dict[str, np.ndarray] = {}
        self.scores: dict[str, dict] = {}
        self.trained: dict[str, list] = {}
        self.errors: dict[PathKey, Exception] = {}
        self.pending: set[PathKey] = set()
        self.submitted: dict[int, tuple[str, list, list]] = {}  # submission id → (phase, jobs, subset keys)
        self.store = open_store(plan.options.store, plan.options.storage_options or None)
        self.stream = runtime.stream()
        self.bars: dict[str, tuple[Any, list[int]]] = {}
        self.kept = {"fills": 0, "scores": 0}  # subsets whose completion, or every score, the checkpoint held
        objectives = plan.config.objectives
        self.dense = {k: v for k, v in objectives.items() if dense_facility(k, v)}
        self.rest = {k: v for k, v in objectives.items() if k not in self.dense}
        # dense facility location scores a batch by GEMMs against the union of its subsets' rows: batches of a
        # third of the subsets (and the rest once no path or completion is running) share most of those rows
        self.dense_wait: list[str] = []
        self.dense_batch = max(1, len(self.specs) // 3)
        self.running = 0  # path and completion jobs submitted and not yet done

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        jobs = plan_path_jobs(self.plan, list(self.specs.values()), self.slots, have=self.paths)
        self.pending = {key for job in jobs for unit in job.units for key in unit_keys(unit)}
        self._bar("paths", "greedy paths (maximisers, minimisers)", kept=len(self.paths), announce=not jobs)
        self._submit("paths", path_jobs, jobs)
        self._advance()
        self._flush_dense()
        for sid, i, out in self.stream:
            phase, jobs, keys = self.submitted[sid]
            if phase in ("paths", "fills"):
                self.running -= 1
            getattr(self, f"_{phase}_done")(jobs[i], out, keys, i)
            self._tick(phase, jobs[i].label)
            self._flush_dense()
        for phase in ("fills", "scores"):  # a phase the checkpoint held whole says so once
            if phase not in self.bars:
                self._bar(phase, self._DESCRIPTIONS[phase], kept=self.kept[phase], announce=True)

    def _submit(self, phase: str, task, jobs: list, keys: list | None = None) -> None:
        if jobs:
            sid = self.stream.submit(task, jobs, [j.label for j in jobs], priority=PRIORITY[phase])
            self.submitted[sid] = (phase, jobs, keys or [])
            self._grow(phase, len(jobs))
            if phase in ("paths", "fills"):
                self.running += len(jobs)

    def _advance(self) -> None:
        """Every subset whose path is in (or needs none): cut here, or sent to a fill job; one whose path job
        failed, or was never planned, fails."""
        fills, ready = [], []
        for key, spec in self.specs.items():
            if key in self.state:
                continue
            pk = path_key(spec)
            if needs_fill(spec) and key in self.filled:
                self.kept["fills"] += 1
                ready.append((key, np.asarray(self.filled[key], dtype=np.int64)))
            elif pk is not None and (pk in self.pending or pk not in self.paths):
                if pk not in self.pending:  # its job failed, or no job makes it
                    self._fail(key, self.errors.get(pk) or RuntimeError(f"the path {pk.name} was not computed"))
            elif needs_fill(spec):
                self.state[key] = "filling"
                fills.append(spec)
            else:
                ready.append((key, subset_from_paths(spec, self.paths, None, self.plan.labels)))
        self._submit("fills", fill_jobs, plan_fill_jobs(self.plan, fills, self.paths, self.slots))
        self._realised(ready)

    def _realised(self, ready: list[tuple[str, np.ndarray]]) -> None:
        """Subsets whose rows are known: their scores (those the checkpoint lacks) and their training submitted."""
        objectives, missing = self.plan.config.objectives, []
        for key, idx in ready:
            self.state[key], self.indices[key] = "ready", idx
            self.scores[key] = {name: self.known[e] for name, params in objectives.items()
                                if (e := score_entry(idx, name, params)) in self.known}
            if len(self.scores[key]) < len(objectives):
                missing.append(key)
            else:
                self.kept["scores"] += 1
        if self.rest:
            self._submit("scores", score_jobs, plan_score_jobs(self.plan, [self.indices[k] for k in missing], self.rest,
                                                               self.slots), missing)
        if self.dense:
            self.dense_wait.extend(missing)
        plan, so = self.plan, self.plan.options.storage_options or None
        keys = [key for key, _ in ready]
        self._submit("train", train_jobs,
                     [TrainJob(plan.options.store, plan.holdout_desc, self.indices[key].tolist(),
                               [s.to_dict() for s, _ in self.groups[key]], plan.config.to_dict(), so,
                               label=f"{self.specs[key].kind}-k{self.specs[key].k}") for key in keys], keys)
        for key in keys:
            self._maybe_log(key)

    def _flush_dense(self) -> None:
        if self.dense_wait and (len(self.dense_wait) >= self.dense_batch or not self.running):
            keys, self.dense_wait = self.dense_wait, []
            self._submit("scores", score_jobs, plan_score_jobs(self.plan, [self.indices[k] for k in keys], self.dense,
                                                               self.slots), keys)

    # ---------------------------------------------------------------- results as they come
    def _paths_done(self, job, out, keys, i) -> None:
        made = [key for unit in job.units for key in unit_keys(unit)]
        self.pending.difference_update(made)
        if out.ok:  # kept as each job ends: a kill or a failed run later loses none of it
            self.saved["paths"].save({path_entry(PathKey.from_dict(key)): picks for key, picks in out.value["paths"]})
            self.paths.update({PathKey.from_dict(key): np.asarray(picks, dtype=np.int64)
                               for key, picks in out.value["paths"]})
        else:
            self.errors.update({key: out.error for key in made})
        self._advance()

    def _fills_done(self, job, out, keys, i) -> None:
        done, ready = {}, []
        for item, rows in zip(job.fills, out.value["subsets"] if out.ok else [None] * len(job.fills)):
            key = SubsetSpec.from_dict(item["spec"]).subset_key
            if rows is None:
                self._fail(key, out.error)
            else:
                done[key] = np.asarray(rows, dtype=np.int64).tolist()
                ready.append((key, np.asarray(rows, dtype=np.int64)))
        self.saved["fills"].save(done)
        self._realised(ready)

    def _scores_done(self, job, out, keys, i) -> None:
        objectives, done = self.plan.config.objectives, {}
        for pos, got in zip(job.positions, out.value["scores"] if out.ok else [None] * len(job.positions)):
            key = keys[pos]  # the job's positions are among the subsets it was given
            if got is None:
                self._fail(key, out.error)
                continue
            self.scores[key].update(got)
            done.update({score_entry(self.indices[key], name, objectives[name]): value
                         for name, value in got.items() if name in objectives})
            self._maybe_log(key)
        self.saved["scores"].save(done)

    def _train_done(self, job, out, keys, i) -> None:
        key = keys[i]
        self.trained[key] = out.value["trains"] if out.ok else [out] * len(self.groups[key])
        self._maybe_log(key)

    def _maybe_log(self, key: str) -> None:
        if (self.state.get(key) != "ready" or key not in self.trained
                or len(self.scores[key]) < len(self.plan.config.objectives)):
            return
        self.state[key] = "logged"
        idx = self.indices[key]
        rows = self.plan.positions[idx]
        subset = {"indices": idx.tolist(), "rows": rows.tolist(), "ids": self.store.ids(rows).tolist(),
                  "scores": {name: self.scores[key][name] for name in self.plan.config.objectives}}
        self.log(key, subset, self.trained.pop(key))

    def _fail(self, key: str, exc: Exception) -> None:
        if self.state.get(key) not in ("failed", "logged"):
            self.state[key] = "failed"
            self.fail_cb(key, exc)

    # ---------------------------------------------------------------- progress, one line per phase
    _DESCRIPTIONS = {"fills": "mixtures completed by the minimiser", "scores": "subsets scored by every objective",
                     "train": "subsets trained"}

    def _bar(self, phase: str, description: str, kept: int = 0, announce: bool = False) -> None:
        """A phase's progress (its total grows as its jobs are submitted); ``announce``: none will be, say so."""
        update = self.runtime.progress(f"{PROGRESS_KEY}-{phase}", 0, f"Study: {description}")
        self.bars[phase] = (update, [0, 0])
        if announce:
            update(100.0, 0, 0, f"{kept:,} kept from an earlier run" if kept else "nothing to do", phase)

    def _grow(self, phase: str, n: int) -> None:
        if phase not in self.bars:
            self._bar(phase, self._DESCRIPTIONS[phase])
        self.bars[phase][1][1] += n

    def _tick(self, phase: str, label: str) -> None:
        if phase == "train":  # the runs have their own line (one per spec logged)
            return
        update, counts = self.bars[phase]
        counts[0] += 1
        update(100.0 * counts[0] / counts[1], counts[0], counts[1], label, phase)


def study_body(options: StudyOptions, runtime) -> dict[str, Any]:
    """Plan, record the split, track, map the subsets, log each result, aggregate: the body of the flow."""
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
    link = runtime.run_url()  # the flow run, from MLflow (on the server that reopens a temporary one's records)
    flow_tags = {"worth.flow_run_id": str(runtime.run_id()), "worth.flow_run_url": link} if link else {}
    parent_id = tracker.start(plan.key, f"study-{plan.key[:8]}", params=parent_params,
                              tags={"worth.kind": "study", **flow_tags}, existing=known.get(plan.key))
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
    groups: dict[str, list[tuple[SubsetSpec, str]]] = {}
    for spec, ck in todo:  # one subset per distinct selection (fixed and budget select alike)
        groups.setdefault(spec.subset_key, []).append((spec, ck))
    total = len(plan.specs)
    progress = runtime.progress(PROGRESS_KEY, len(todo),
                                f"Subsets trained and logged ({len(todo)} to train, {reused} reused)")
    errors, processes, done = [], set(), 0

    def open_run(spec: SubsetSpec, ck: str) -> str:
        return tracker.start(ck, spec.name, params=child_params(spec, cfg), parent_id=parent_id,
                             existing=known.get(ck), tags={"worth.kind": spec.kind, "worth.subset_key": spec.subset_key})

    def fail(key: str, exc: Exception) -> None:  # a subset whose path, completion or scores failed fails its specs
        for spec, ck in groups[key]:
            tracker.finish(open_run(spec, ck), "FAILED")
            errors.append((spec.name, exc))

    def log(key: str, subset: dict, trains: list) -> None:
        nonlocal done
        for (spec, ck), trained in zip(groups[key], trains):
            # the run is opened when its result is in, so the UI lists finished subsets as they come and a kill
            # leaves at most the one being logged unfinished (reopened by its id on the next run)
            run_id = open_run(spec, ck)
            if not trained.ok:  # the other subsets finish and are logged; the flow fails at the end
                tracker.finish(run_id, "FAILED")
                errors.append((spec.name, trained.error))
                continue
            evaluation, subset_scores = dict(trained.value), subset["scores"]
            processes.add(evaluation.pop("process"))
            tracker.log_metrics(run_id, child_metrics(subset_scores, evaluation))
            tracker.log_params(run_id, {"steps": evaluation["steps"], "device": evaluation["device"]})
            tracker.log_json(run_id, {"run": spec.name, "key": ck, "spec_key": spec.key, "spec": spec.to_dict(),
                                      "store": options.store, "holdout": h, "rows": subset["rows"],
                                      "ids": subset["ids"], "pool_indices": subset["indices"],
                                      "scores": subset_scores, "evaluation": evaluation}, "subset.json")
            tracker.finish(run_id)
            rows[spec.key] = result_row(spec, subset_scores, evaluation)
            done += 1
            progress(100.0 * done / len(todo), reused + done, total, spec.name, "runs")

    _Subsets(plan, groups, runtime, log, fail).run()
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
    runtime.markdown(REPORT_KEY, report_md + where, f"Appraisal study of {options.store}")
    return {"report": str(out["report"]), "results": str(out["results"]), "out_dir": plan.out_dir,
            "tracking_uri": plan.tracking_uri, "experiment": plan.experiment, "experiment_id": tracker.experiment_id,
            "parent_run_id": parent_id, "study_key": plan.key, "subsets": total, "trained": len(todo),
            "reused": reused, "processes": sorted(processes), "seconds": seconds,
            "ui": track.ui_command(plan.tracking_uri), "flow_run_id": runtime.run_id(),
            "experiment_url": track.experiment_url(plan.tracking_uri, tracker.experiment_id)}


study_flow = make_flow(study_body, StudyOptions, name="study", description="The appraisal study: subsets "
                       "selected, scored, trained and evaluated, correlations reported, every run tracked in MLflow.",
                       run_name=study_run_name)


def _prepare(plan: StudyPlan) -> None:
    """The tracking database, created in the launching process before any worker starts."""
    track.Tracker.open(plan.tracking_uri, plan.experiment, plan.artifact_location)


def run_study(options: StudyOptions, spec=None, *, task_runner=None, on_result=None) -> dict[str, Any]:
    """Run the study on the cluster of ``spec``, on ``task_runner``, or — with neither — inline in this process
    (:func:`flows.runtime.launch`). ``on_result(done, total, name)`` is called inline after each subset (the
    CLI's progress line)."""
    on_progress = None if on_result is None else (lambda pct, *detail: on_result(*detail))
    return launch(study_flow, study_body, plan_study, options, spec, task_runner=task_runner,
                  on_progress=on_progress, prepare=_prepare)


study_deployed = deployed(run_study, StudyOptions, name="study-deployed", description="The deployed study: binds "
                          "the cluster given as a parameter and runs the study flow on it.", run_name=study_run_name)
