"""The embed flow: a source's items → encoder → a resumable Zarr embedding store.

The flow takes the store's writer lock (:mod:`storage.lock`: a second run on the same store fails at once),
plans the store in its own process (creating it, or finding what an earlier run left undone, or the new items to
append), splits the unfinished chunks into shards of whole chunks (:mod:`pipeline.embed`), and maps them over the
runtime (:mod:`flows.runtime`). Each shard writes only its own chunks, so a killed run resumes where it stopped;
a failed shard keeps the others. A progress artifact moves as shards finish; a markdown artifact summarises the
store at the end.

Launch it with a cluster bound from outside (never hard-coded here)::

    from flows.embed import EmbedOptions, run_embed
    from infra.dask import local_spec
    run_embed(EmbedOptions(source="fashion-mnist", store="fm.zarr", encoder="efficientnet-lite0"), local_spec())

or ``worth embed fashion-mnist --encoder efficientnet-lite0 --store fm.zarr``.
"""

from __future__ import annotations

import time
from typing import Any

from flows.runtime import deployed, launch, make_flow
from pipeline.embed import (EmbedOptions, embed_run_name, plan_embed, plan_store, shard_jobs, source_and_encoder,
                            store_summary)
from storage.embedding import summary_markdown
from storage.lock import writer_lock
from tasks.embed import embed_shards

PROGRESS_KEY = "embed-progress"
SUMMARY_KEY = "embed-summary"


def embed_body(options: EmbedOptions, runtime) -> dict[str, Any]:
    """Lock the store, plan it, map the shards, summarise (the body of the flow)."""
    t0 = time.perf_counter()
    source, encoder = source_and_encoder(options)
    so = options.storage_options or None
    with writer_lock(options.store, so, command=f"embed flow {options.source} -> {options.store}"):
        plan = plan_store(options, source, encoder)
        total = plan.pending_rows
        progress = runtime.progress(PROGRESS_KEY, total, f"Rows embedded into {options.store} this run (of {total:,})")
        jobs = shard_jobs(options, plan, source, encoder)
        rows, errors, processes = 0, [], set()
        for _, out in runtime.map(embed_shards, jobs, [j.label for j in jobs]):
            if not out.ok:  # the other shards finish and keep their chunks; the flow fails at the end
                errors.append(out.error)
                continue
            rows += out.value["rows"]
            processes.add(out.value["process"])
            progress(100.0 * rows / total if total else 100.0)
        if errors:
            raise errors[0]
    seconds = time.perf_counter() - t0
    summary = store_summary(options)
    note = "" if total else "\n\nThe store was already complete: nothing to do."
    runtime.markdown(SUMMARY_KEY, summary_markdown(summary, rows=rows, seconds=seconds) + note,
                     f"Embedding store {options.store}")
    return {**summary, "rows_embedded": rows, "seconds": seconds,
            "items_per_s": rows / seconds if seconds > 0 else 0.0, "nothing_to_do": total == 0,
            "shards": len(jobs), "shard_processes": sorted(processes), "flow_run_id": runtime.run_id()}


embed_flow = make_flow(embed_body, EmbedOptions, name="embed", description="Embed a source into a resumable Zarr "
                       "store.",
                       run_name=embed_run_name)


def run_embed(options: EmbedOptions, spec=None, *, task_runner=None, on_progress=None) -> dict[str, Any]:
    """Run the embed flow on the cluster of ``spec``, on ``task_runner``, or — with neither — inline
    (:func:`flows.runtime.launch`: the source, encoder and store are checked here first, writing nothing)."""
    return launch(embed_flow, embed_body, plan_embed, options, spec, task_runner=task_runner,
                  on_progress=on_progress)


embed_deployed = deployed(run_embed, EmbedOptions, name="embed-deployed", description="The deployed embed flow: "
                          "binds the cluster given as a parameter.", run_name=embed_run_name)
