"""The select flow: selections over a Zarr embedding store, run as batched jobs, kept as versioned manifests.

One call takes a list of :class:`~pipeline.select.SelectionSpec` (a study needs many subsets) and

1. **plans** them (:func:`pipeline.select.plan_selections`, in the launching process before anything starts,
   and again in the flow): bad input fails with a ``ValueError`` before any task starts or anything is written;
   a spec whose manifest with the same job key exists is skipped;
2. **maps** the jobs over the runtime (:mod:`flows.runtime`, batched): one select job for ``fixed`` and
   ``balanced``, one per class for ``per-class``, one per part and then a merge job for ``sharded`` (GreeDi);
3. **writes** each spec's manifest from its own process as soon as that spec's jobs are done, so a flow killed
   mid-way keeps the manifests it finished and a rerun does only the rest; a failed job fails its spec only.

A progress artifact moves as jobs finish; a markdown artifact lists the manifests written and skipped.

Launch::

    from flows.select import SelectOptions, SelectionSpec, run_select
    from infra.dask import local_spec
    spec = SelectionSpec(name="vendi-500", objective="vendi", k=500, regime="per-class", quotas=50)
    run_select(SelectOptions(store="fm.zarr", selections=[spec]), local_spec())

or ``worth select --store fm.zarr --name vendi-500 --k 500``. See ``docs/select.md``.
"""

from __future__ import annotations

import time
from typing import Any

from flows.runtime import deployed, launch, make_flow
from pipeline.select import (MergeJob, Plan, SelectionSpec, SelectOptions, entry, manifest_record,  # noqa: F401
                             plan_selections, select_run_name, summary_markdown)
from storage import manifest as mf
from storage.store import EmbeddingStore
from tasks.select import merge_jobs, select_jobs

PROGRESS_KEY = "select-progress"
SUMMARY_KEY = "select-summary"


def select_body(options: SelectOptions, runtime) -> dict[str, Any]:
    """Plan, map every job, write each spec's manifest when its last job is in; fail at the end if a job did."""
    t0 = time.perf_counter()
    plans = plan_selections(options)
    so = options.storage_options or None
    store = EmbeddingStore.open(options.store, storage_options=so)
    run_id = runtime.run_id()
    todo = [p for p in plans if p.existing is None]
    total = sum(p.n_jobs for p in todo)
    progress = runtime.progress(PROGRESS_KEY, total, f"Selection jobs finished this run (of {total})")
    results: dict[str, list] = {p.key: [None] * p.n_jobs for p in todo}
    left = {p.key: len(p.jobs) for p in todo}
    written, errors, finished = {}, [], 0

    def publish(p: Plan) -> None:  # the plan's last job: its manifest now, not at the end of the run
        written[p.key] = mf.write_manifest(options.store, p.spec.name,
                                           manifest_record(p, results[p.key], store, run_id), storage_options=so)

    def collect(wave, outcomes) -> list[Plan]:
        nonlocal finished
        ready = []
        for i, out in outcomes:
            p, slot = wave[i]
            if not out.ok:  # the other selections finish and keep their manifests; the flow fails at the end
                errors.append(out.error)
                continue
            finished += 1
            progress(100.0 * finished / total)
            results[p.key][slot] = out.value
            left[p.key] -= 1
            if left[p.key] == 0:
                ready.append(p)
        return ready

    wave = [(p, i) for p in todo for i in range(len(p.jobs))]
    jobs = [p.jobs[i] for p, i in wave]
    merges = []
    for p in collect(wave, runtime.map(select_jobs, jobs, [j.label for j in jobs])):
        if p.merge is None:
            publish(p)
        else:
            left[p.key] = 1
            merges.append(p)
    if merges:  # GreeDi's merge rounds, once their parts are in
        wave = [(p, len(p.jobs)) for p in merges]
        jobs = [MergeJob(p.merge, results[p.key][:-1]) for p in merges]
        for p in collect(wave, runtime.map(merge_jobs, jobs, [j.label for j in jobs])):
            publish(p)
    entries = [entry(p.existing, "skipped", options) if p.existing is not None else
               entry(written[p.key], "written", options) for p in plans if p.existing is not None or p.key in written]
    seconds = time.perf_counter() - t0
    runtime.markdown(SUMMARY_KEY, summary_markdown(options, entries, seconds), f"Selections in {options.store}")
    if errors:
        raise errors[0]
    return {"manifests": entries, "seconds": seconds, "jobs": total, "flow_run_id": run_id}


select_flow = make_flow(select_body, SelectOptions, name="select",
                        description="Select subsets of an embedding store; versioned manifests.",
                        run_name=select_run_name)


def run_select(options: SelectOptions, spec=None, *, task_runner=None, on_progress=None) -> dict[str, Any]:
    """Run the select flow on the cluster of ``spec``, on ``task_runner``, or — with neither — inline (see
    :func:`flows.runtime.launch`). A ``cuda`` spec computes on the workers' GPUs unless ``options.device`` says
    otherwise."""
    if spec is not None and spec.kind == "cuda" and options.device is None:
        options = options.model_copy(update={"device": "cuda"})
    return launch(select_flow, select_body, plan_selections, options, spec, task_runner=task_runner,
                  on_progress=on_progress)


select_deployed = deployed(run_select, SelectOptions, name="select-deployed",
                           description="The deployed select flow: binds the cluster given as a parameter.",
                           run_name=select_run_name)
