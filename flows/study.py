"""The appraisal study as a flow: which data-value objective predicts held-out accuracy, tracked in MLflow.

:func:`plan_study` runs first, in the launching process, and refuses bad input before anything runs (the pool's
checks are :func:`pipeline.study.plan_pool`; here: a tracking store with no place for artifacts).

The flow then records the held-out split with the store (once), opens the study's MLflow experiment (creating
the tracking database in this process, before any worker starts), and realises, scores and trains the distinct
subsets of the specs still to run in four maps over the runtime (:mod:`flows.runtime`; :func:`realise_and_score`):
every greedy path once (branching runs per objective: each balanced path leaves the unconstrained one where a
class fills), the mixtures completed by the minimiser, every subset's scores in batches, and the training of
each subset once per spec that uses it. Every other subset (prefixes of the stored paths, seeded draws, random
completions) is cut in this process. Only this process writes to MLflow: each spec's child run is opened, logged
and finished as its training result arrives; a progress artifact moves meanwhile. At the end the tables, figures
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
                            cached_paths, child_params, correlation_metrics, needs_fill, open_store, path_entry,
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


def realise_and_score(plan: StudyPlan, specs: list[SubsetSpec], runtime) -> tuple[dict[str, dict], dict[str, Exception]]:
    """Every distinct subset of ``specs`` (one spec each) realised and scored, the work shared:

    1. every greedy path once (:func:`pipeline.study.plan_path_jobs`: maximisers and minimisers at their
       largest k, facility location's states of a job sharing one first pass), mapped over the runtime;
    2. the mixtures completed by the minimiser, from the stored maximisers (:func:`pipeline.study.plan_fill_jobs`);
    3. every other subset cut from the stored paths here (prefixes, seeded draws, random completions);
    4. every subset scored by every objective in batches (:func:`pipeline.study.plan_score_jobs`).

    Returns ``subset_key → {"indices", "rows", "ids", "scores"}`` and ``subset_key → error`` for the subsets
    whose path, completion or scores failed (their specs fail; the others go on).
    """
    slots = runtime.slots()
    failed: dict[str, Exception] = {}
    work = work_folder(plan)
    saved = {kind: Checkpoint(work / kind) for kind in ("paths", "fills", "scores")}
    paths: dict[PathKey, np.ndarray] = cached_paths(saved["paths"].load())
    jobs = plan_path_jobs(plan, specs, slots, have=paths)
    errors: dict[PathKey, Exception] = {}
    for i, out in _phase(runtime, "paths", "greedy paths (maximisers, minimisers)", jobs,
                         runtime.map(path_jobs, jobs, [j.label for j in jobs]), kept=len(paths)):
        if out.ok:  # kept as each job ends: a kill or a failed run later loses none of it
            saved["paths"].save({path_entry(PathKey.from_dict(key)): picks for key, picks in out.value["paths"]})
            paths.update({PathKey.from_dict(key): np.asarray(picks, dtype=np.int64) for key, picks in out.value["paths"]})
        else:
            errors.update({key: out.error for unit in jobs[i].units for key in unit_keys(unit)})
    for spec in specs:  # a subset whose path failed fails with its job's error
        key = path_key(spec)
        if key is not None and key not in paths:
            failed[spec.subset_key] = errors.get(key) or RuntimeError(f"the path {key.name} was not computed")
    filled = saved["fills"].load()
    indices: dict[str, np.ndarray] = {s.subset_key: np.asarray(filled[s.subset_key], dtype=np.int64)
                                      for s in specs if needs_fill(s) and s.subset_key in filled}
    fills = plan_fill_jobs(plan, [s for s in specs if s.subset_key not in failed and s.subset_key not in indices],
                           paths, slots)
    for i, out in _phase(runtime, "fills", "mixtures completed by the minimiser", fills,
                         runtime.map(fill_jobs, fills, [j.label for j in fills]), kept=len(indices)):
        done = {}
        for item, rows in zip(fills[i].fills, out.value["subsets"] if out.ok else [None] * len(fills[i].fills)):
            key = SubsetSpec.from_dict(item["spec"]).subset_key
            if rows is None:
                failed[key] = out.error
            else:
                indices[key] = np.asarray(rows, dtype=np.int64)
                done[key] = np.asarray(rows, dtype=np.int64).tolist()
        saved["fills"].save(done)
    for spec in specs:
        if spec.subset_key not in failed and spec.subset_key not in indices and not needs_fill(spec):
            indices[spec.subset_key] = subset_from_paths(spec, paths, None, plan.labels)
    keys = [s.subset_key for s in specs if s.subset_key in indices]
    objectives = plan.config.objectives
    known_scores = saved["scores"].load()
    scores: list[dict] = [{name: known_scores[score_entry(indices[k], name, params)]
                           for name, params in objectives.items() if score_entry(indices[k], name, params) in known_scores}
                          for k in keys]
    missing = [pos for pos, sc in enumerate(scores) if len(sc) < len(objectives)]
    scored = plan_score_jobs(plan, [indices[keys[pos]] for pos in missing], objectives, slots)
    for i, out in _phase(runtime, "scores", "subsets scored by every objective", scored,
                         runtime.map(score_jobs, scored, [j.label for j in scored]), kept=len(keys) - len(missing)):
        done = {}
        for pos, got in zip(scored[i].positions, out.value["scores"] if out.ok else [None] * len(scored[i].positions)):
            pos = missing[pos]  # the job's positions are among the subsets it was given
            if got is None:
                failed[keys[pos]] = out.error
            else:
                scores[pos].update(got)
                done.update({score_entry(indices[keys[pos]], name, objectives[name]): value
                             for name, value in got.items() if name in objectives})
        saved["scores"].save(done)
    store = open_store(plan.options.store, plan.options.storage_options or None)
    subsets = {}
    for key, sc in zip(keys, scores):
        if key in failed:
            continue
        idx = indices[key]
        rows = plan.positions[idx]
        subsets[key] = {"indices": idx.tolist(), "rows": rows.tolist(), "ids": store.ids(rows).tolist(),
                        "scores": {name: sc[name] for name in plan.config.objectives}}
    return subsets, failed


def _phase(runtime, phase: str, description: str, jobs: list, results, kept: int = 0):
    """``results`` of a map passed through, the phase's progress reported as each job finishes (a progress
    artifact per phase; the CLI's line says ``paths 3/12``): the study is not silent before its first run.
    A phase whose work the checkpoint holds whole (``kept`` pieces, no job) says so once."""
    progress = runtime.progress(f"{PROGRESS_KEY}-{phase}", len(jobs), f"Study: {description}")
    if not jobs:
        progress(100.0, 0, 0, f"{kept:,} kept from an earlier run" if kept else "nothing to do", phase)
    for done, (i, out) in enumerate(results, 1):
        progress(100.0 * done / len(jobs), done, len(jobs), jobs[i].label, phase)
        yield i, out


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
    subsets, failed = realise_and_score(plan, [g[0][0] for g in groups.values()], runtime)

    total = len(plan.specs)
    progress = runtime.progress(PROGRESS_KEY, len(todo),
                                f"Subsets trained and logged ({len(todo)} to train, {reused} reused)")
    errors, processes, done = [], set(), 0
    members = [g for key, g in groups.items() if key not in failed]
    for key, group in groups.items():  # a subset whose path, completion or scores failed fails its specs
        if key in failed:
            for spec, ck in group:
                run_id = tracker.start(ck, spec.name, params=child_params(spec, cfg), parent_id=parent_id,
                                       existing=known.get(ck),
                                       tags={"worth.kind": spec.kind, "worth.subset_key": spec.subset_key})
                tracker.finish(run_id, "FAILED")
                errors.append((spec.name, failed[key]))
    jobs = [TrainJob(options.store, h, subsets[g[0][0].subset_key]["indices"], [s.to_dict() for s, _ in g],
                     cfg.to_dict(), so, label=f"{g[0][0].kind}-k{g[0][0].k}") for g in members]
    for i, out in runtime.map(train_jobs, jobs, [j.label for j in jobs]):
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
            evaluation, subset = dict(trained.value), subsets[spec.subset_key]
            subset_scores = subset["scores"]
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
            progress(100.0 * done / len(todo), reused + done, total, spec.name, "runs")
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
