"""Storage: the Zarr embedding store and the pipeline that fills it.

:class:`EmbeddingStore` holds a pool's embeddings, labels, ids and split with completed-chunk bookkeeping;
:mod:`storage.embedding` plans rows (repairing what :meth:`EmbeddingStore.verify` finds damaged) and embeds chunks
into it; :mod:`storage.lock` lets one run at a time write a store. Local paths and fsspec URLs (``s3://``) alike,
named by one :class:`StoreRef` (:mod:`storage.ref`: the URL and its fsspec options together).
"""

from storage.embedding import EmbedPlan, embed_chunks, embed_into_store, plan, repair, shards, summary_markdown
from storage.integrity import ChunkDamage, StoreDamagedError, VerifyReport
from storage.lock import StoreLockedError, writer_lock
from storage.ref import StoreRef
from storage.store import DEFAULT_CHUNK_ROWS, EmbeddingStore, StoreMismatchError, zarr_store

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "EmbedPlan",
    "EmbeddingStore",
    "ChunkDamage",
    "StoreDamagedError",
    "StoreLockedError",
    "StoreMismatchError",
    "StoreRef",
    "VerifyReport",
    "embed_chunks",
    "embed_into_store",
    "plan",
    "repair",
    "shards",
    "summary_markdown",
    "writer_lock",
    "zarr_store",
]
