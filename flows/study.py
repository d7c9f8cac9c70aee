"""The appraisal study as a flow: which data-value objective predicts held-out accuracy, tracked in MLflow.

:func:`plan_study` runs first, in the launching process, and refuses bad input before anything runs (the pool's
checks are :func:`pipeline.study.plan_pool`; here: a tracking store with no place for artifacts).

The flow then records the held-out split with the store (once), opens the study's MLflow experiment (creating
the tracking database in this process, before any worker starts), and maps the study's distinct subsets over the
runtime (:mod:`flows.runtime`, batched): each :class:`~pipeline.study.SubsetJob` realises one subset, scores it
and trains it once per spec. Only this process writes to MLflow: each spec's child run is opened, logged and
finished as its result arrives; a progress artifact moves meanwhile. At the end the tables, figures and
``report.md`` are written (:func:`worth.appraisal.aggregate`) and logged to the parent run, and the report
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
from pipeline.study import (StudyOptions, StudyPlan, SubsetJob, SubsetSpec, child_key, child_metrics,  # noqa: F401
                            child_params, correlation_metrics, plan_pool, row_from_run, study_folder, study_key)
from storage.holdout import record
from tasks import track
from tasks.train import subset_jobs
from worth.appraisal import aggregate, result_row

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
    groups: dict[str, list[tuple[SubsetSpec, str]]] = {}
    for spec, ck in todo:  # one realisation per distinct subset (fixed and budget select alike)
        groups.setdefault(spec.subset_key, []).append((spec, ck))
    members = list(groups.values())
    jobs = [SubsetJob(options.store, h, group[0][0].to_dict(), [s.to_dict() for s, _ in group], cfg.objectives,
                      cfg.to_dict(), so, label=f"{group[0][0].kind}-k{group[0][0].k}") for group in members]
    total = len(plan.specs)
    progress = runtime.progress(PROGRESS_KEY, len(todo),
                                f"Subsets trained and logged ({len(todo)} to train, {reused} reused)")
    errors, processes, done = [], set(), 0
    for i, out in runtime.map(subset_jobs, jobs, [j.label for j in jobs]):
        trains = out.value["trains"] if out.ok else [out] * len(members[i])
        for (spec, ck), trained in zip(members[i], trains):
            # the run is opened when its result is in, so the UI lists finished subsets as they come and a kill
            # leaves at most the one being logged unfinished (reopened by its id on the next run)
            run_id = tracker.start(ck, spec.name, params=child_params(spec, cfg), parent_id=parent_id,
                                   existing=known.get(ck),
                                   tags={"worth.kind": spec.kind, "worth.subset_key": spec.subset_key})
            if not trained.ok:  # the other subsets finish and are logged; the flow fails at the end
                tracker.finish(run_id, "FAILED")
                errors.append((spec.name, trained.error))
                continue
            evaluation, subset, subset_scores = dict(trained.value), out.value["subset"], out.value["scores"]
            processes.add(evaluation.pop("process"))
            tracker.log_metrics(run_id, child_metrics(subset_scores, evaluation))
            tracker.log_params(run_id, {"steps": evaluation["steps"], "device": evaluation["device"]})
            row = result_row(spec, subset_scores, evaluation)
            tracker.log_json(run_id, {"run": spec.name, "key": ck, "spec_key": spec.key, "spec": spec.to_dict(),
                                      "store": options.store, "holdout": h, "rows": subset["rows"],
                                      "ids": subset["ids"], "pool_indices": subset["indices"],
                                      "scores": subset_scores, "evaluation": evaluation}, "subset.json")
            tracker.finish(run_id)
            rows[spec.key] = row
            done += 1
            progress(100.0 * done / len(todo), reused + done, total, spec.name)
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
            "ui": track.ui_command(plan.tracking_uri), "flow_run_id": runtime.run_id()}


study_flow = make_flow(study_body, StudyOptions, name="study", description="The appraisal study: subsets "
                       "selected, scored, trained and evaluated, correlations reported, every run tracked in MLflow.")


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
                          "the cluster given as a parameter and runs the study flow on it.")
