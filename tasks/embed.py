"""Prefect tasks of the embed flow: thin wrappers over :mod:`storage.embedding` and :mod:`worth.data.encoders`.

``plan_store`` runs where the flow runs (it is the one writer of ids, labels and attributes);
``embed_shard`` runs on the task runner — a Dask worker, say — and writes only its own chunks, so it is
idempotent: running it twice writes the same bytes, and a finished chunk is skipped.

Retries and caching follow the project's one task factory (:mod:`tasks._task`).
"""

from __future__ import annotations

from typing import Any

from storage import embedding as _embedding
from storage.store import EmbeddingStore
from tasks._task import worker_threads, worth_task
from worth.data.encoders import resolve_encoder, set_torch_threads
from worth.data.sources import resolve_source


def _plan_store(url: str, source_ref: Any, encoder_ref: Any, chunk_rows: int, dtype: str, codec: str,
                storage_options: dict[str, Any] | None = None) -> _embedding.EmbedPlan:
    return _embedding.plan(url, resolve_source(source_ref), resolve_encoder(encoder_ref), chunk_rows=chunk_rows,
                           dtype=dtype, codec=codec, storage_options=storage_options)


def _embed_shard(url: str, source_ref: Any, encoder_ref: Any, chunks: list[int],
                 storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    encoder = resolve_encoder(encoder_ref)
    if encoder.uses_torch:
        set_torch_threads(worker_threads())
    return _embedding.embed_chunks(url, resolve_source(source_ref), encoder, chunks, storage_options=storage_options)


def _store_summary(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    return EmbeddingStore.open(url, storage_options=storage_options).summary()


plan_store = worth_task(_plan_store, name="plan-store", cache=False)  # runs in the flow's process
embed_shard = worth_task(_embed_shard, name="embed-shard", task_run_name="embed-chunks-{chunks}")
store_summary = worth_task(_store_summary, name="store-summary", cache=False)
