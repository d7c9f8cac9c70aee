"""Prefect tasks of the embed flow: thin wrappers over :mod:`storage.embedding` and :mod:`worth.encoders`.

``plan_store`` runs where the flow runs (it is the one writer of ids, labels and attributes);
``embed_shard`` runs on the task runner — a Dask worker, say — and writes only its own chunks, so it is
idempotent: running it twice writes the same bytes, and a finished chunk is skipped.

Retries only where I/O can fail (an object store timing out, a connection reset): a ``ValueError`` (bad input:
an unreadable image, a mismatched store) fails at once, since retrying cannot fix it.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from storage import embedding as _embedding
from storage.store import EmbeddingStore
from worth.encoders import resolve_encoder, set_torch_threads
from worth.sources import resolve_source

_NOT_TRANSIENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient_io_error(task, task_run, state) -> bool:
    """Retry condition: the task failed with an I/O error that another try may not meet."""
    try:
        state.result()
    except _NOT_TRANSIENT:
        return False
    except (OSError, TimeoutError, ConnectionError):
        return True
    except BaseException:
        return False
    return False


def _worker_threads() -> int | None:
    """Threads of the Dask worker running us (None outside Dask): torch should use no more."""
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return None


def _plan_store(url: str, source_ref: Any, encoder_ref: Any, chunk_rows: int, dtype: str, codec: str,
                storage_options: dict[str, Any] | None = None) -> _embedding.EmbedPlan:
    return _embedding.plan(url, resolve_source(source_ref), resolve_encoder(encoder_ref), chunk_rows=chunk_rows,
                           dtype=dtype, codec=codec, storage_options=storage_options)


def _embed_shard(url: str, source_ref: Any, encoder_ref: Any, chunks: list[int],
                 storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    encoder = resolve_encoder(encoder_ref)
    if encoder.uses_torch:
        set_torch_threads(_worker_threads())
    return _embedding.embed_chunks(url, resolve_source(source_ref), encoder, chunks, storage_options=storage_options)


def _store_summary(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    return EmbeddingStore.open(url, storage_options=storage_options).summary()


plan_store = task(_plan_store, name="plan-store", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
                  retry_condition_fn=is_transient_io_error)
embed_shard = task(_embed_shard, name="embed-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
                   retry_condition_fn=is_transient_io_error,
                   task_run_name="embed-chunks-{chunks}")
store_summary = task(_store_summary, name="store-summary", cache_policy=NO_CACHE, retries=2,
                     retry_delay_seconds=2, retry_condition_fn=is_transient_io_error)
