"""Filling a store from a source with an encoder: plan the rows, then embed chunk by chunk.

The two steps are separate because they run in different places: :func:`plan` runs once, in the process that
launched the run (it is the only writer of ids, labels, split and attributes); :func:`embed_chunks` runs
anywhere (a Dask worker, a thread, inline) and touches only its own chunks. :func:`embed_into_store` chains
them serially for library use and as the reference the parallel flow is tested against.

Sources and encoders are duck-typed (see :mod:`worth.data.sources`, :mod:`worth.data.encoders`); this module imports
neither torch nor Prefect.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from storage.integrity import ChunkDamage, StoreDamagedError, digest_values
from storage.lock import writer_lock
from storage.ref import StoreRef
from storage.store import DEFAULT_CHUNK_ROWS, EmbeddingStore


@dataclass(frozen=True)
class EmbedPlan:
    """What a run will do: the store, its size, the rows added now and the chunks left to embed."""

    url: str
    n: int
    dim: int
    created: bool
    added: tuple[int, int]
    pending_chunks: list[int] = field(default_factory=list)
    pending_rows: int = 0
    damaged: tuple[ChunkDamage, ...] = ()

    @property
    def nothing_to_do(self) -> bool:
        return self.pending_rows == 0 and not self.damaged


def _remap_labels(source, store_classes: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Labels of the source expressed in the store's class numbering (extending it with new class names)."""
    if source.classes is None or store_classes is None:
        return np.asarray(source.labels, dtype=np.int64), (list(source.classes) if source.classes else store_classes)
    classes = list(store_classes)
    index = {c: i for i, c in enumerate(classes)}
    for c in source.classes:
        if c not in index:
            index[c] = len(classes)
            classes.append(c)
    table = np.array([index[c] for c in source.classes], dtype=np.int64)
    labels = np.asarray(source.labels, dtype=np.int64)
    return np.where(labels >= 0, table[np.clip(labels, 0, None)], -1), classes


def _cannot_rewrite(store: EmbeddingStore, name: str, chunk: int, source, why: str) -> StoreDamagedError:
    lo = chunk * store.chunk_rows
    return StoreDamagedError(
        f"store {store.url!r} is damaged: {name} chunk {chunk} (rows {lo}..{min(lo + store.chunk_rows, store.n)}) "
        f"cannot be rewritten from source {source.spec!r}: {why}; restore the chunk file from a backup, or rebuild "
        "the store into a new path"
    )


def _rewrite_from_source(store: EmbeddingStore, source, damage: dict[str, set[int]], *, write: bool) -> None:
    """Rewrite damaged ids/labels/split chunks from the source, each checked against its recorded digest.

    Lost ids are the source's items that no sound ids chunk holds, in source order (the order :meth:`reserve`
    wrote them); labels and split are the source's, looked up by id. A rewrite happens only when its values hash
    to the digest recorded when the chunk was first written, so it restores exactly the old rows — or the store
    is declared damaged with the rows named. Never appends: nothing here changes ``n``.
    """
    c = store.chunk_rows
    planned: list[tuple[str, int, np.ndarray]] = []

    def checked(name: str, chunk: int, values: np.ndarray) -> np.ndarray:
        rec = store.recorded_digest(name, chunk)
        if rec is None:
            raise _cannot_rewrite(store, name, chunk, source, "no digest was recorded to check a rewrite against")
        if len(values) != rec[0] or digest_values(values) != rec[1]:
            raise _cannot_rewrite(store, name, chunk, source, "the source no longer holds the same items")
        return values

    ids_bad = sorted(damage.get("ids", ()))
    ids_of: dict[int, np.ndarray] = {}
    if ids_bad:
        intact = set()
        for chunk in range(store.n_chunks):
            if chunk not in ids_bad:
                intact.update(store.ids(slice(*store.chunk_bounds(chunk))).tolist())
        candidates = [i for i in source.ids.tolist() if i not in intact]
        pos = 0
        for chunk in ids_bad:
            rec = store.recorded_digest("ids", chunk)
            rows = rec[0] if rec else 0
            ids_of[chunk] = checked("ids", chunk, np.array(candidates[pos: pos + rows], dtype=str))
            pos += rows
            planned.append(("ids", chunk, ids_of[chunk]))
    index = {s: i for i, s in enumerate(source.ids.tolist())}
    labels, _ = _remap_labels(source, store.classes)
    for name, column in (("labels", labels), ("split", np.asarray(source.split, dtype=str))):
        for chunk in sorted(damage.get(name, ())):
            rec = store.recorded_digest(name, chunk)
            rows = rec[0] if rec else 0
            ids = ids_of[chunk] if chunk in ids_of else store.ids(slice(*store.chunk_bounds(chunk)))[:rows]
            if chunk not in ids_of and rows > len(ids):  # rows reserved past n by a killed run: read them raw
                ids = np.asarray(np.asarray(store.array_raw("ids")[chunk * c: chunk * c + rows]).tolist(), dtype=str)
            missing = [i for i in ids.tolist() if i not in index]
            if missing:
                raise _cannot_rewrite(store, name, chunk, source, f"it no longer has items {missing[:3]}")
            pos = np.fromiter((index[i] for i in ids.tolist()), dtype=np.int64, count=len(ids))
            planned.append((name, chunk, checked(name, chunk, column[pos])))
    if write:
        for name, chunk, values in planned:
            store.rewrite_chunk(name, chunk, values)


def repair(store: EmbeddingStore, source, *, write: bool = True) -> tuple[ChunkDamage, ...]:
    """Find damage (:meth:`EmbeddingStore.verify`) and repair what can be repaired exactly; return what was found.

    Lost array metadata is written again from the store's attributes; damaged embedding chunks (or their
    bookkeeping) are dropped and marked unfinished, so the embed run that follows re-embeds them; damaged
    ids/labels/split chunks are rewritten from ``source`` when it still holds those items (checked against the
    recorded digests). Anything else raises :class:`StoreDamagedError` naming the rows. With ``write=False``
    nothing is written: the same checks run, so a launcher learns before any work whether a run can repair.
    """
    report = store.verify()
    if report.ok:
        return ()
    found = report.damaged
    lost = [d.array for d in report.damaged if d.chunk is None]
    if lost and not write:
        return found
    for name in lost:
        store.restore_array(name)
    if lost:
        report = store.verify()
        if any(d.chunk is None for d in report.damaged):
            raise report.error()
    meta: dict[str, set[int]] = {}
    for d in report.damaged:
        if not d.embeddings_only:
            meta.setdefault(d.array.removesuffix("_digest"), set()).add(int(d.chunk))
    _rewrite_from_source(store, source, meta, write=write)
    if write:
        for chunk in sorted({int(d.chunk) for d in report.damaged if d.embeddings_only}):
            store.reset_chunk(chunk)
    return found


def probe_dim(source, encoder) -> int:
    """The embedding dimension, by encoding the source's first item (works for any encoder)."""
    return int(encoder.encode(source.take([0])).shape[1])


def plan(url: StoreRef | str, source, encoder, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, dtype: str = "float32",
         codec: str = "zstd", storage_options: Mapping[str, Any] | None = None,
         dry_run: bool = False) -> EmbedPlan:
    """Create or open the store at ``url`` and reserve rows for the source's items it does not hold yet.

    Refuses (``StoreMismatchError``, a ``ValueError``) to add rows from another encoder, parameters, dimension,
    dtype, normalisation or source. With ``dry_run`` nothing is written and the dimension is not probed: the plan
    just says whether there is work.
    """
    ref = StoreRef.of(url, storage_options)
    url = ref.url
    encoder.check_source(source.kind)
    exists = EmbeddingStore.exists(ref)
    if dry_run:
        if not exists:
            return EmbedPlan(url, len(source), -1, True, (0, len(source)), [0], len(source))
        store = EmbeddingStore.open(ref)
        store.check_compatible(encoder=encoder.identity(), dim=store.dim, dtype=dtype, normalize=encoder.normalize,
                               source_kind=source.kind, source_spec=source.spec)
        damaged = repair(store, source, write=False)
        if damaged:
            chunks = sorted({int(d.chunk) for d in damaged if d.embeddings_only and d.chunk is not None})
            rows = sum(min(c * store.chunk_rows + store.chunk_rows, store.n) - c * store.chunk_rows for c in chunks)
            return EmbedPlan(url, store.n, store.dim, False, (store.n, store.n), chunks, rows, damaged)
        new = int((~np.isin(source.ids, store.ids())).sum())
        c = store.chunk_rows
        fresh = range(store.n // c, -(-(store.n + new) // c)) if new else range(0)
        pending = sorted(set(store.pending_chunks()) | set(fresh))
        rows = store.n - store.rows_done() + new
        return EmbedPlan(url, store.n + new, store.dim, False, (store.n, store.n + new), pending, rows)
    dim = probe_dim(source, encoder)
    if exists:
        store = EmbeddingStore.open(ref, mode="r+")
        store.check_compatible(encoder=encoder.identity(), dim=dim, dtype=dtype, normalize=encoder.normalize,
                               source_kind=source.kind, source_spec=source.spec)
        damaged = repair(store, source)
        store.ensure_digests()
    else:
        damaged = ()
        store = EmbeddingStore.create(ref, dim=dim, encoder=encoder.identity(), source=source.describe(),
                                      chunk_rows=chunk_rows, dtype=dtype, normalize=encoder.normalize,
                                      classes=source.classes, codec=codec)
    new_mask = ~np.isin(source.ids, store.ids())
    labels, classes = _remap_labels(source, store.classes)
    added = store.reserve(source.ids[new_mask], labels[new_mask], source.split[new_mask], classes=classes,
                          source=source.describe() if new_mask.any() else None)
    pending = store.pending_chunks()
    return EmbedPlan(url, store.n, store.dim, not exists, added, pending, store.n - store.rows_done(), damaged)


@lru_cache(maxsize=4)
def _id_index(source) -> dict[str, int]:
    return {s: i for i, s in enumerate(source.ids.tolist())}


def embed_chunks(url: StoreRef | str, source, encoder, chunks: Sequence[int], *,
                 storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Embed the unfinished rows of ``chunks`` and write them; returns rows written and seconds spent.

    Finished rows are skipped (a rerun after a kill redoes only what was not recorded). Rows are matched to the
    source's items by id, so the source may have grown or been reordered since the plan.
    """
    ref = StoreRef.of(url, storage_options)
    url = ref.url
    t0 = time.perf_counter()
    store = EmbeddingStore.open(ref, mode="r+")
    index = _id_index(source)
    done = store.chunks_done()
    written = 0
    for chunk in chunks:
        lo, hi = store.chunk_bounds(int(chunk))
        start = lo + int(done[chunk])
        if start >= hi:
            continue
        ids = store.ids(slice(start, hi))
        missing = [i for i in ids.tolist() if i not in index]
        if missing:
            raise ValueError(
                f"rows {start}..{hi} of store {url!r} wait for items {missing[:3]} that the source "
                f"{source.spec!r} no longer has: restore them, or build a new store"
            )
        positions = np.fromiter((index[i] for i in ids.tolist()), dtype=np.int64, count=len(ids))
        rows = encoder.encode(source.take(positions))
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            raise ValueError(
                f"items {ids[bad][:3].tolist()} of source {source.spec!r} embed to NaN or inf ({int(bad.sum())} in "
                f"rows {start}..{hi}): their values are not finite; drop or fix those items in the source"
            )
        store.write_rows(int(chunk), start, rows)
        written += len(rows)
    return {"chunks": [int(c) for c in chunks], "rows": written, "seconds": time.perf_counter() - t0,
            "process": f"{socket.gethostname()}:{os.getpid()}"}


def shards(chunks: Sequence[int], chunks_per_shard: int = 1) -> list[list[int]]:
    """Group chunk numbers into shards of whole chunks (the unit of one task)."""
    if chunks_per_shard < 1:
        raise ValueError(f"chunks_per_shard={chunks_per_shard}: must be at least 1")
    chunks = list(chunks)
    return [chunks[i: i + chunks_per_shard] for i in range(0, len(chunks), chunks_per_shard)]


def embed_into_store(url: StoreRef | str, source, encoder, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, dtype: str = "float32",
                     codec: str = "zstd", storage_options: Mapping[str, Any] | None = None,
                     progress=None) -> dict[str, Any]:
    """Plan and embed serially in this process (no Prefect, no Dask), holding the store's writer lock.

    ``progress(rows)`` is called per chunk.
    """
    ref = StoreRef.of(url, storage_options)
    url = ref.url
    t0 = time.perf_counter()
    with writer_lock(ref):
        p = plan(ref, source, encoder, chunk_rows=chunk_rows, dtype=dtype, codec=codec)
        rows = 0
        for chunk in p.pending_chunks:
            res = embed_chunks(ref, source, encoder, [chunk])
            rows += res["rows"]
            if progress is not None:
                progress(res["rows"])
    seconds = time.perf_counter() - t0
    return {"plan": p, "rows": rows, "seconds": seconds}


def summary_markdown(summary: Mapping[str, Any], *, rows: int, seconds: float) -> str:
    """The embed flow's closing report (also printed by the CLI)."""
    classes = summary.get("classes") or []
    counts = summary.get("class_counts", {})
    class_line = (", ".join(f"{classes[k] if 0 <= int(k) < len(classes) else k}: {v}" for k, v in counts.items())
                  if counts else "none")
    rate = rows / seconds if seconds > 0 else float("nan")
    enc = summary["encoder"]
    return "\n".join([
        f"# Embedding store `{summary['url']}`",
        "",
        "| | |",
        "|---|---|",
        f"| items (n) | {summary['n']:,} |",
        f"| dimension (m) | {summary['dim']} ({summary['dtype']}, {'L2-normalised' if summary['normalize'] else 'raw'}) |",
        f"| encoder | `{enc['name']}` {enc.get('version', '')} {enc.get('params') or ''} |",
        f"| source | `{summary['source'].get('spec')}` ({summary['source'].get('kind')}) |",
        f"| classes | {len(counts) - (1 if -1 in counts or '-1' in counts else 0)} |",
        f"| split | {summary.get('split_counts')} |",
        f"| chunks | {summary['chunks_complete']}/{summary['chunks']} complete ({summary['chunk_rows']} rows each) |",
        f"| embedded this run | {rows:,} items in {seconds:.1f} s ({rate:,.0f} items/s) |",
        f"| size stored | {summary['bytes_stored'] / 2**20:.1f} MiB |",
        "",
        f"Per class: {class_line}",
    ])
