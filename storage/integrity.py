"""How a store knows that it is damaged: per-chunk digests of the row values, and the verification report.

A digest is recorded for every chunk of ``embeddings``, ``labels``, ``ids`` and ``split`` each time the store
writes that chunk, in a small array of its own (``<name>_digest``: one Zarr chunk of two int64 per data chunk,
``[rows, hash]``, so parallel writers of different chunks never share a digest chunk either). ``rows`` says how
many leading rows of the chunk the hash covers; ``hash`` is blake2b (8 bytes) of their *decoded values*.

Why values and not the stored bytes: the store's resume protocol writes a chunk first and its bookkeeping
after. A digest of the leading rows that exist does not change when a later write adds rows behind them (an
append into the tail chunk, rows reserved by a run that was then killed), so a kill at any moment never makes a
sound chunk look damaged. Every kind of damage still shows: a deleted chunk decodes to fill values (NaN, −1,
"") that do not match, a truncated, zero-byte or garbage file fails to decode or decodes to other values.

This module holds no store logic: :class:`storage.store.EmbeddingStore` records and checks digests with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

#: The arrays whose chunks carry a digest (``chunks_done`` is checked by decoding: one number per chunk).
TRACKED = ("embeddings", "labels", "ids", "split")
#: Written to the store's attributes when it records digests; stores from before have none.
DIGEST_SCHEME = "blake2b-8 of the decoded row values, per chunk"
NOT_RECORDED = -1


class StoreDamagedError(ValueError):
    """Rows of the store cannot be trusted: a chunk or an array's metadata is missing, unreadable or altered."""


def digest_name(name: str) -> str:
    """Name of the digest array of data array ``name``."""
    return f"{name}_digest"


def digest_values(values: np.ndarray) -> int:
    """blake2b (8 bytes, as a signed int64) of row values: numbers by their bytes, strings length-prefixed UTF-8."""
    h = hashlib.blake2b(digest_size=8)
    a = np.asarray(values)
    if a.dtype.kind in "OUT" or a.dtype == np.dtypes.StringDType():
        for s in a.tolist():
            b = str(s).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        h.update(np.ascontiguousarray(a).tobytes())
    return int(np.frombuffer(h.digest(), dtype=np.int64)[0])


@dataclass(frozen=True)
class ChunkDamage:
    """One damaged piece of a store: an array's chunk (or its whole metadata, ``chunk is None``)."""

    array: str
    chunk: int | None
    rows: tuple[int, int]
    problem: str

    def __str__(self) -> str:
        where = "metadata" if self.chunk is None else f"chunk {self.chunk}"
        return f"{self.array} {where} (rows {self.rows[0]}..{self.rows[1]}): {self.problem}"

    @property
    def embeddings_only(self) -> bool:
        """Damage that re-embedding repairs (the rows' embeddings or their bookkeeping, not ids/labels/split)."""
        return self.array in ("embeddings", "chunks_done", digest_name("embeddings"))


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`storage.store.EmbeddingStore.verify` found.

    Attributes
    ----------
    url : str
    n, chunks : int
        Rows and chunks of the store.
    damaged : tuple of ChunkDamage
        Each damaged chunk, by array and row range.
    undigested : dict
        Array name → chunks with rows but no digest (stores written before digests existed): they were
        decoded and checked for empty ids and NaN in finished rows, but altered values that still decode
        cannot be detected there.
    """

    url: str
    n: int
    chunks: int
    damaged: tuple[ChunkDamage, ...] = ()
    undigested: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def repair_hint(self) -> str:
        """What to do about the damage found."""
        if all(d.embeddings_only for d in self.damaged):
            return "rerun `worth embed` with the same source and store to re-embed the damaged chunks"
        return ("rerun `worth embed` with the same source: it rewrites ids, labels and split from the source when "
                "the source still has those items; otherwise restore the chunk files from a backup or rebuild the "
                "store into a new path")

    def text(self) -> str:
        """A report for people: one line per damaged chunk, then the verdict."""
        lines = [f"verified {self.url}: {self.n:,} rows in {self.chunks} chunks per array"]
        lines += [f"  damaged: {d}" for d in self.damaged]
        if self.undigested:
            parts = ", ".join(f"{name}: {k}" for name, k in sorted(self.undigested.items()))
            lines.append(f"  no digest recorded for some chunks ({parts}): written by an older worth; they were "
                         "decoded and checked for empty ids and unfinished rows only")
        if self.ok:
            lines.append("no damage found")
        else:
            lines.append(f"{len(self.damaged)} damaged: {self.repair_hint()}")
        return "\n".join(lines)

    def error(self) -> StoreDamagedError:
        """One-line :class:`StoreDamagedError` naming the first damage, how many more, and the fix."""
        more = f" (and {len(self.damaged) - 1} more; `worth info --store {self.url} --verify` lists them)" \
            if len(self.damaged) > 1 else ""
        return StoreDamagedError(f"store {self.url!r} is damaged: {self.damaged[0]}{more}; {self.repair_hint()}")
