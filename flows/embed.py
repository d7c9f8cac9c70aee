"""The embed flow: a source's items → encoder → a resumable Zarr embedding store.

The flow takes the store's writer lock (:mod:`storage.lock`: a second run on the same store fails at once),
plans the store in its own process (creating it, or finding what an earlier run left undone, or the
new items to append), splits the unfinished chunks into shards of whole chunks, and runs one task per shard on
whatever task runner it was launched with. Each shard writes only its own chunks, so shards run in parallel
without sharing a chunk, and a killed run resumes where it stopped. A progress artifact moves as shards
finish; a markdown artifact summarises the store at the end.

Launch it with a cluster bound from outside (never hard-coded here)::

    from flows.embed import EmbedOptions, embed_flow, run_embed
    from infra.dask import local_spec
    run_embed(EmbedOptions(source="fashion-mnist", store="fm.zarr", encoder="efficientnet-lite0"), local_spec())

or ``worth embed fashion-mnist --encoder efficientnet-lite0 --store fm.zarr``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from storage.embedding import shards, summary_markdown
from storage.lock import writer_lock
from storage.store import DEFAULT_CHUNK_ROWS
from tasks.embed import embed_shard, plan_store, store_summary
from worth.data.encoders import encoder_ref, get_encoder
from worth.data.sources import load_source

PROGRESS_KEY = "embed-progress"
SUMMARY_KEY = "embed-summary"


class EmbedOptions(BaseModel):
    """Options of one embedding run (they become the Prefect UI's run form)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="What to embed: digits, mnist5k, fashion-mnist; a folder of images (one sub-folder per "
        "class); a .txt/.csv/.tsv/.parquet file; a .npy/.npz file; or hf:NAME (Hugging Face datasets)."
    )
    store: str = Field(
        description="Where the Zarr store lives: a local path or an fsspec URL (s3://bucket/pool.zarr). Created "
        "when missing; when present, unfinished chunks are resumed and new items of the source appended."
    )
    encoder: str = Field(
        "pixels",
        description="pixels, efficientnet-lite0 (images), minilm (text), or a hub model: timm:NAME, "
        "open_clip:ARCH[@TAG], hf:NAME.",
    )
    encoder_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Encoder parameters, e.g. {'dim': 256, 'seed': 0} for pixels, {'image_size': 64} for "
        "efficientnet-lite0, {'batch_size': 64, 'device': 'cuda'} for any torch encoder.",
    )
    source_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Source options, e.g. {'label_column': 'label', 'text_column': 'text'} for a csv or parquet file.",
    )
    limit: int | None = Field(None, ge=1, description="Embed only the first LIMIT items of the source.")
    chunk_rows: int = Field(
        DEFAULT_CHUNK_ROWS, ge=1,
        description="Rows per Zarr chunk: the unit of parallel writing and of resume (fixed when the store is created).",
    )
    chunks_per_shard: int = Field(1, ge=1, description="Whole chunks per task.")
    dtype: Literal["float32", "float16"] = Field("float32", description="Storage precision of the embeddings.")
    normalize: bool = Field(True, description="L2-normalise every row (the selection math assumes it).")
    codec: Literal["zstd", "blosc-lz4", "none"] = Field(
        "zstd", description="Compression of the embeddings (zstd: about half the size of blosc-lz4 on encoder "
        "features, reads about as fast).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for a remote store, e.g. {'endpoint_url': 'http://127.0.0.1:9000'} for S3.",
    )


def _embed(options: EmbedOptions) -> dict[str, Any]:
    t0 = time.perf_counter()
    source = load_source(options.source, limit=options.limit, **options.source_params)
    encoder = get_encoder(options.encoder, normalize=options.normalize, **options.encoder_params)
    so = options.storage_options or None
    with writer_lock(options.store, so, command=f"embed flow {options.source} -> {options.store}"):
        return _embed_locked(options, source, encoder, so, t0)


def _embed_locked(options: EmbedOptions, source, encoder, so: dict[str, Any] | None, t0: float) -> dict[str, Any]:
    """The flow's work while it holds the store's writer lock (one run per store)."""
    plan = plan_store(options.store, source, encoder, options.chunk_rows, options.dtype, options.codec, so)
    total = plan.pending_rows
    progress_id = create_progress_artifact(
        progress=0.0 if total else 100.0, key=PROGRESS_KEY,
        description=f"Rows embedded into {options.store} this run (of {total:,})",
    )
    futures = [embed_shard.submit(options.store, source.ref(), encoder_ref(encoder), shard, so)
               for shard in shards(plan.pending_chunks, options.chunks_per_shard)]
    rows, errors, processes = 0, [], set()
    for fut in as_completed(futures):
        try:
            res = fut.result()
            rows += res["rows"]
            processes.add(res["process"])
        except Exception as exc:  # let the other shards finish and keep their chunks, then fail
            errors.append(exc)
            continue
        update_progress_artifact(progress_id, 100.0 * rows / total if total else 100.0)
    if errors:
        raise errors[0]
    seconds = time.perf_counter() - t0
    summary = store_summary(options.store, so)
    note = "" if total else "\n\nThe store was already complete: nothing to do."
    create_markdown_artifact(markdown=summary_markdown(summary, rows=rows, seconds=seconds) + note, key=SUMMARY_KEY,
                             description=f"Embedding store {options.store}")
    return {**summary, "rows_embedded": rows, "seconds": seconds,
            "items_per_s": rows / seconds if seconds > 0 else 0.0, "nothing_to_do": total == 0,
            "shards": len(futures), "shard_processes": sorted(processes), "flow_run_id": str(flow_run.id)}


embed_flow = flow(_embed, name="embed", description="Embed a source into a resumable Zarr store.",
                  log_prints=True, validate_parameters=True)


def run_embed(options: EmbedOptions, spec=None, *, task_runner=None) -> dict[str, Any]:
    """Run the embed flow on the cluster of ``spec`` (an :class:`infra.dask.ClusterSpec`) or on ``task_runner``.

    It first makes sure one Prefect API serves the run (:func:`infra.dask.prefect_api`): Dask workers then do
    not start servers of their own, and a temporary server dies with this process even on kill -9. With neither
    ``spec`` nor ``task_runner``, Prefect's default thread runner is used.
    """
    from infra.dask import prefect_api, task_runner as runner_for

    if spec is not None and task_runner is not None:
        raise ValueError("give spec (a ClusterSpec) or task_runner, not both")
    with prefect_api():  # one server, never orphaned by a kill -9 (Prefect's own ephemeral one would be)
        if spec is None and task_runner is None:
            return embed_flow(options)
        return embed_flow.with_options(task_runner=task_runner or runner_for(spec))(options)


if __name__ == "__main__":  # python -m flows.embed SOURCE STORE [ENCODER]: guard needed by Dask worker processes
    import json
    import sys

    from infra.dask import default_spec

    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit("usage: python -m flows.embed SOURCE STORE [ENCODER]")
    opts = EmbedOptions(source=args[0], store=args[1], encoder=args[2] if len(args) > 2 else "pixels")
    print(json.dumps(run_embed(opts, default_spec()), indent=2, default=str))
