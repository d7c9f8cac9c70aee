"""The embed flow's library: its options, the plan (source, encoder and store checked, writing nothing), the
shard job (whole chunks embedded and written by the worker that runs it) and the store's summary. No Prefect.

A shard writes only its own chunks, so shards run in parallel without sharing a chunk, running one twice writes
the same bytes, and a finished chunk is skipped: a killed run resumes where it stopped. The store's ids, labels
and attributes are written by one process only, the flow's (:func:`plan_store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.threads import worker_threads
from storage import embedding as _embedding
from storage.ref import StoreRef
from storage.store import DEFAULT_CHUNK_ROWS, EmbeddingStore
from worth.data.encoders import encoder_ref, get_encoder, resolve_encoder, set_torch_threads
from worth.data.sources import load_source, resolve_source


def store_name(store: str) -> str:
    """A store's short name for labels (flow-run names): its last path component without ``.zarr``."""
    base = str(store).rstrip("/").rsplit("/", 1)[-1]
    return base[:-5] if base.endswith(".zarr") else base


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


def source_and_encoder(options: EmbedOptions):
    """The options' source and encoder (an unknown name, a bad parameter: a ``ValueError`` naming it)."""
    source = load_source(options.source, limit=options.limit, **options.source_params)
    encoder = get_encoder(options.encoder, normalize=options.normalize, **options.encoder_params)
    return source, encoder


def plan_embed(options: EmbedOptions) -> _embedding.EmbedPlan:
    """Check the source, the encoder and the store against each other, writing nothing (a dry-run plan)."""
    source, encoder = source_and_encoder(options)
    return _embedding.plan(options.store, source, encoder, chunk_rows=options.chunk_rows, dtype=options.dtype,
                           codec=options.codec, storage_options=options.storage_options or None, dry_run=True)


def plan_store(options: EmbedOptions, source, encoder) -> _embedding.EmbedPlan:
    """Create or open the store and reserve rows for the new items (the flow's process: the one writer)."""
    return _embedding.plan(options.store, source, encoder, chunk_rows=options.chunk_rows, dtype=options.dtype,
                           codec=options.codec, storage_options=options.storage_options or None)


@dataclass(frozen=True)
class ShardJob:
    """Whole chunks of the store to embed: the source and encoder by reference, read where the job runs."""

    store: StoreRef
    source: Any
    encoder: Any
    chunks: list[int]

    def __post_init__(self):  # a URL string is a ref with no options
        object.__setattr__(self, "store", StoreRef.of(self.store))

    @property
    def label(self) -> str:
        return f"chunks-{self.chunks}"


def shard_jobs(options: EmbedOptions, plan: _embedding.EmbedPlan, source, encoder) -> list[ShardJob]:
    """The plan's pending chunks in shards of ``chunks_per_shard``."""
    ref = StoreRef.of(options.store, options.storage_options or None)
    return [ShardJob(ref, source.ref(), encoder_ref(encoder), shard)
            for shard in _embedding.shards(plan.pending_chunks, options.chunks_per_shard)]


def run_shard(job: ShardJob) -> dict[str, Any]:
    """Embed the job's chunks and write them (torch on the worker's share of threads)."""
    encoder = resolve_encoder(job.encoder)
    if encoder.uses_torch:
        set_torch_threads(worker_threads())
    return _embedding.embed_chunks(job.store, resolve_source(job.source), encoder, job.chunks)


def store_summary(options: EmbedOptions) -> dict[str, Any]:
    return EmbeddingStore.open(options.store, storage_options=options.storage_options or None).summary()


def embed_run_name(options: EmbedOptions) -> str:
    """The flow run's name: ``embed-STORE``."""
    return f"embed-{store_name(options.store)}"
