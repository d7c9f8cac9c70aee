"""The embedding store: one Zarr 3 group per pool of items.

Layout (schema version 1)::

    <store>/zarr.json          group attributes under "worth": n, dim, dtype, chunk_rows, encoder, source, ...
    <store>/embeddings         n x m, float32 (float16 on request), chunks of ``chunk_rows`` whole rows
    <store>/labels             n, int64, -1 where the label is unknown
    <store>/ids                n, UTF-8 strings, stable item ids (the key for resume and append)
    <store>/split              n, UTF-8 strings ("train", "test", ...)
    <store>/chunks_done        one int64 per embedding chunk: how many leading rows of that chunk are final
    <store>/<name>_digest      for embeddings, labels, ids, split: per chunk [rows, blake2b of those rows]
                               (storage.integrity; stores written before digests existed lack them)

Why this shape:

* Writers only ever write whole rows of one embedding chunk, and each chunk has exactly one writer, so
  parallel writers (Dask workers) never share a chunk. Unaligned parallel writes lose rows (docs/stack.md).
* ``chunks_done`` has one Zarr chunk per embedding chunk, so its bookkeeping is just as disjoint. It is written
  *after* the rows it vouches for; a process killed at any moment leaves, at worst, rows that are written but
  not yet recorded, and a rerun writes them again with the same values. Local writes are atomic in Zarr 3
  (temporary file + rename) and object stores replace whole objects, so no chunk is ever torn.
* ``ids``, ``labels`` and ``split`` of new rows are written by the one planning process *before* any embedding
  (:meth:`EmbeddingStore.reserve`), and the attribute ``n`` is raised only after them. Until ``n`` is raised
  the new rows do not exist for readers; afterwards every row knows which item it belongs to, so a resumed run
  needs nothing but the store and the source.
* Appending resizes the arrays (a metadata write) and writes only the new rows: complete chunks are never
  rewritten. The one chunk that was the partial tail gets its new rows written beside the old ones, whose values
  are kept exactly.

Rows that are reserved but not yet embedded read as NaN, so a half-built store is readable and honest.
Every read of rows checks the chunks it decodes against their digests and raises
:class:`~storage.integrity.StoreDamagedError` naming the chunk, rather than returning altered rows.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr
import zarr.storage

from storage.ref import StoreRef
from storage.integrity import (
    DIGEST_SCHEME, NOT_RECORDED, TRACKED, ChunkDamage, StoreDamagedError, VerifyReport, digest_name, digest_values,
)

SCHEMA_VERSION = 1
ATTR_KEY = "worth"
DEFAULT_CHUNK_ROWS = 16_384
DTYPES = ("float32", "float16")
#: Codec of the embeddings, chosen by measurement (this machine, 5,000 Fashion-MNIST rows in one chunk):
#: zstd level 0 stored EfficientNet-Lite0 features (1280-d, ReLU6, many zeros) in 0.39 of their raw size,
#: blosc-lz4+shuffle in 0.73; raw pixels (784-d) 0.35 vs 0.58. Reads: 500 vs 620 MB/s, writes 160 vs 230 MB/s —
#: both far above what an encoder produces, and close for the selection side, so zstd is the default.
CODECS = ("zstd", "blosc-lz4", "none")


class StoreMismatchError(ValueError):
    """The store exists but was written with another encoder, dimension, dtype or source."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _as_str(a: np.ndarray) -> np.ndarray:
    """Zarr 3 returns variable-length strings as NumPy's StringDType; give plain fixed-width str arrays."""
    return np.array(np.asarray(a).tolist(), dtype=str) if np.size(a) else np.zeros(np.shape(a), dtype="<U1")


def zarr_store(url: StoreRef | str, *, storage_options: Mapping[str, Any] | None = None, read_only: bool = False):
    """The Zarr store object for a store reference (or a local path or an fsspec URL).

    Local paths and ``file://`` URLs use Zarr's :class:`~zarr.storage.LocalStore`, whose writes are atomic
    (temporary file + rename) — the property the resume protocol relies on. Every other URL (``s3://``,
    ``gs://``, ``memory://`` ...) goes through fsspec with ``storage_options`` (for S3: ``endpoint_url``,
    ``key``, ``secret`` ... as s3fs takes them).
    """
    ref = StoreRef.of(url, storage_options)
    if ref.is_local:
        if os.path.isfile(ref.path):
            raise ValueError(f"store={ref.url!r} is a file, not a store: choose another path (a new directory is "
                             "created there), or the directory of a store made by `worth embed`")
        return zarr.storage.LocalStore(ref.path, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(ref.url, storage_options=dict(ref.storage_options), read_only=read_only)


def _compressors(codec: str):
    if codec == "blosc-lz4":
        return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    if codec == "zstd":
        return zarr.codecs.ZstdCodec(level=0, checksum=False)
    if codec == "none":
        return None
    raise ValueError(f"codec={codec!r} is not one of {CODECS}")


def _array_specs(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every array of a store: ``create_array`` arguments but the shape, as functions of the store attributes.

    One definition serves :meth:`EmbeddingStore.create` and the repair of an array whose metadata was lost, so
    a re-created array reads its surviving chunk files exactly as before.
    """
    c, dim = int(meta["chunk_rows"]), int(meta["dim"])
    specs = {
        "embeddings": dict(chunks=(c, dim), dtype=meta["dtype"], fill_value=np.nan,
                           compressors=_compressors(meta.get("codec", "zstd"))),
        "labels": dict(chunks=(c,), dtype="int64", fill_value=-1),
        "ids": dict(chunks=(c,), dtype=str, fill_value=""),
        "split": dict(chunks=(c,), dtype=str, fill_value=""),
        "chunks_done": dict(chunks=(1,), dtype="int64", fill_value=0),
    }
    if meta.get("digests"):
        for name in TRACKED:
            specs[digest_name(name)] = dict(chunks=(1, 2), dtype="int64", fill_value=NOT_RECORDED, compressors=None)
    return specs


def _array_shape(name: str, meta: Mapping[str, Any], n: int) -> tuple[int, ...]:
    chunks = math.ceil(n / int(meta["chunk_rows"]))
    if name == "embeddings":
        return (n, int(meta["dim"]))
    if name == "chunks_done":
        return (chunks,)
    if name.endswith("_digest"):
        return (chunks, 2)
    return (n,)


def _unreadable_metadata(url: str, name: str | None, exc: BaseException) -> StoreDamagedError:
    """The error for a ``zarr.json`` that is there but cannot be read (garbage, empty, truncated), by its path."""
    why = " ".join(str(exc).split()) or type(exc).__name__
    if name is None:
        return StoreDamagedError(
            f"store {url!r} is damaged: its metadata file {url.rstrip('/')}/zarr.json cannot be read ({why}): "
            "restore that file from a backup, or rebuild the store into a new path with `worth embed`")
    return StoreDamagedError(
        f"store {url!r} is damaged: the metadata file of array {name!r}, {url.rstrip('/')}/{name}/zarr.json, "
        f"cannot be read ({why}): delete that file and rerun `worth embed` with the same source and store (it "
        "writes the metadata again; the chunks read as before), or rebuild the store")


def _has_array(group: zarr.Group, name: str, url: str) -> bool:
    """Whether ``group`` has array ``name``; its metadata there but unreadable is damage, named."""
    try:
        group[name]
    except KeyError:
        return False
    except ValueError as exc:  # a garbage, empty or truncated zarr.json (JSON's error, zarr's metadata errors)
        raise _unreadable_metadata(url, name, exc) from None
    return True


def _decodes(arr: zarr.Array, chunk: int) -> bool:
    try:
        arr[chunk]
    except Exception:
        return False
    return True


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class EmbeddingStore:
    """A pool's embeddings, labels, ids and split in a Zarr 3 group, with resume bookkeeping.

    Create one with :meth:`create`, open an existing one with :meth:`open`. Reads return NumPy arrays of the
    first :attr:`n` rows (rows not yet embedded are NaN); :meth:`to_dask` and :meth:`to_array` give Dask and
    CuPy views for the selection side.
    """

    def __init__(self, group: zarr.Group, url: StoreRef | str, storage_options: Mapping[str, Any] | None = None):
        ref = StoreRef.of(url, storage_options)
        url = ref.url
        if ATTR_KEY not in group.attrs:
            raise ValueError(
                f"store={url!r} is a Zarr group but not a worth embedding store (no '{ATTR_KEY}' attributes): "
                "pass the path of a store made by `worth embed`, or a new path to create one"
            )
        self._group = group
        self.ref = ref
        self.url = ref.url
        self.storage_options = dict(ref.storage_options)
        self._meta = dict(group.attrs[ATTR_KEY])
        if self._meta.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"store={url!r} has schema version {self._meta.get('schema_version')!r}; this worth reads "
                f"version {SCHEMA_VERSION}: re-embed into a new store"
            )

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def create(
        cls,
        url: StoreRef | str,
        *,
        dim: int,
        encoder: Mapping[str, Any],
        source: Mapping[str, Any],
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        dtype: str = "float32",
        normalize: bool = True,
        classes: Sequence[str] | None = None,
        codec: str = "zstd",
        storage_options: Mapping[str, Any] | None = None,
    ) -> EmbeddingStore:
        """Create an empty store (n = 0) at ``url``; refuses to overwrite anything that exists there.

        Parameters
        ----------
        dim : int
            Embedding dimension m; fixed for the life of the store.
        encoder : mapping
            ``{"name", "version", "params"}`` of the encoder; later writes must match it exactly.
        source : mapping
            ``{"spec", "kind", "fingerprint"}`` describing where the items come from.
        chunk_rows : int
            Rows per embedding chunk: the unit of parallel writing and of resume.
        dtype : {"float32", "float16"}
            Storage precision. float16 halves the size; selection upcasts on read.
        normalize : bool
            Whether rows are L2-normalised (recorded so that appends cannot mix conventions).
        classes : sequence of str, optional
            Class names, ``classes[label]``.
        codec : {"zstd", "blosc-lz4", "none"}
            Compression of the embeddings.
        """
        ref = StoreRef.of(url, storage_options)
        url = ref.url
        dim = int(dim)
        chunk_rows = int(chunk_rows)
        if dim < 1:
            raise ValueError(f"dim={dim}: the embedding dimension must be at least 1")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows}: must be a positive number of rows (e.g. 16384)")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: choose one of {DTYPES}")
        _compressors(codec)
        zstore = zarr_store(ref)
        try:
            group = zarr.open_group(zstore, mode="w-")
        except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError, FileExistsError) as exc:
            raise ValueError(
                f"store={url!r} already exists: open it with EmbeddingStore.open, or choose a new path"
            ) from exc
        meta = {
            "schema_version": SCHEMA_VERSION,
            "n": 0,
            "dim": dim,
            "dtype": dtype,
            "chunk_rows": chunk_rows,
            "codec": codec,
            "normalize": bool(normalize),
            "encoder": dict(encoder),
            "source": dict(source),
            "classes": list(classes) if classes is not None else None,
            "digests": DIGEST_SCHEME,
            "created_at": _now(),
            "updated_at": _now(),
        }
        for name, spec in _array_specs(meta).items():
            group.create_array(name, shape=_array_shape(name, meta, 0), **spec)
        group.attrs[ATTR_KEY] = meta
        return cls(group, ref)

    @classmethod
    def open(cls, url: StoreRef | str, *, mode: str = "r",
             storage_options: Mapping[str, Any] | None = None) -> EmbeddingStore:
        """Open an existing store, read-only (``mode="r"``) or for writing (``mode="r+"``)."""
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}: use 'r' to read or 'r+' to write; create a store with create()")
        ref = StoreRef.of(url, storage_options)
        url = ref.url
        zstore = zarr_store(ref, read_only=(mode == "r"))
        try:
            group = zarr.open_group(zstore, mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise FileNotFoundError(
                f"store={url!r} does not exist: create it with `worth embed SOURCE --store {url}`"
            ) from exc
        except ValueError as exc:  # its zarr.json garbage, empty or truncated
            raise _unreadable_metadata(url, None, exc) from None
        return cls(group, ref)

    @staticmethod
    def exists(url: StoreRef | str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
        """Whether a worth store exists at ``url``."""
        zstore = zarr_store(url, storage_options=storage_options, read_only=True)
        try:
            group = zarr.open_group(zstore, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False
        except ValueError as exc:  # a store is there, its zarr.json damaged: not "no store" (never overwritten)
            raise _unreadable_metadata(StoreRef.of(url, storage_options).url, None, exc) from None
        return ATTR_KEY in group.attrs

    def refresh(self) -> EmbeddingStore:
        """Re-read the attributes (another process may have appended)."""
        self._meta = dict(self._group.attrs[ATTR_KEY])
        return self

    # ------------------------------------------------------------------ properties
    @property
    def attrs(self) -> dict[str, Any]:
        """All store attributes (a copy)."""
        return dict(self._meta)

    @property
    def n(self) -> int:
        """Number of items (rows) in the store, embedded or reserved."""
        return int(self._meta["n"])

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    @property
    def dtype(self) -> str:
        return str(self._meta["dtype"])

    @property
    def chunk_rows(self) -> int:
        return int(self._meta["chunk_rows"])

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n / self.chunk_rows)

    @property
    def encoder(self) -> dict[str, Any]:
        return dict(self._meta["encoder"])

    @property
    def source(self) -> dict[str, Any]:
        return dict(self._meta["source"])

    @property
    def normalize(self) -> bool:
        return bool(self._meta["normalize"])

    @property
    def classes(self) -> list[str] | None:
        c = self._meta.get("classes")
        return list(c) if c is not None else None

    @property
    def array(self) -> zarr.Array:
        """The raw ``embeddings`` Zarr array (its shape may run past :attr:`n` during an append)."""
        return self._array("embeddings")

    # ------------------------------------------------------------------ integrity
    @property
    def has_digests(self) -> bool:
        """Whether this store records per-chunk digests (stores written before they existed do not)."""
        return bool(self._meta.get("digests"))

    def check_metadata(self) -> None:
        """Read the metadata of every array the store keeps, so a plan finds a damaged ``zarr.json`` before any
        job does (a missing one is left to :meth:`verify` and ``worth embed``'s repair)."""
        for name in _array_specs(self._meta):
            _has_array(self._group, name, self.url)

    def _array(self, name: str) -> zarr.Array:
        try:
            return self._group[name]
        except ValueError as exc:
            raise _unreadable_metadata(self.url, name, exc) from None
        except KeyError:
            raise StoreDamagedError(
                f"store {self.url!r} is damaged: array {name!r} has no metadata ({name}/zarr.json is missing); "
                "rerun `worth embed` with the same source and store to restore it, or rebuild the store"
            ) from None

    def _rows_of(self, chunk: int) -> tuple[int, int]:
        lo = chunk * self.chunk_rows
        return lo, min(lo + self.chunk_rows, self.n)

    def _digests(self, name: str, c0: int, c1: int) -> np.ndarray | None:
        """``(c1 - c0, 2)`` ``[rows, hash]`` of chunks ``c0..c1-1`` of ``name`` (rows −1: none recorded), or None
        in a store without digests. Reads only those chunks' digests (one small object each)."""
        if not self.has_digests:
            return None
        arr = self._array(digest_name(name))
        try:
            d = np.asarray(arr[c0:c1], dtype=np.int64).reshape(-1, 2)
        except Exception as exc:  # a digest chunk that does not decode: find which one
            bad = next(c for c in range(c0, c1) if not _decodes(arr, c))
            raise self._damaged(digest_name(name), bad, f"cannot be decoded ({_short(exc)})") from None
        return np.pad(d, ((0, c1 - c0 - len(d)), (0, 0)), constant_values=NOT_RECORDED)

    def _done(self, c0: int, c1: int) -> np.ndarray:
        """Rows final in chunks ``c0..c1-1`` (reads only those chunks of ``chunks_done``)."""
        if c1 <= c0:
            return np.zeros(0, dtype=np.int64)
        arr = self._array("chunks_done")
        try:
            return np.asarray(arr[c0:c1], dtype=np.int64)
        except Exception as exc:
            bad = next(c for c in range(c0, c1) if not _decodes(arr, c))
            raise self._damaged("chunks_done", bad, f"cannot be decoded ({_short(exc)})") from None

    def array_raw(self, name: str) -> zarr.Array:
        """The Zarr array ``name`` itself, unchecked (repair reads rows past :attr:`n` with it)."""
        return self._array(name)

    def recorded_digest(self, name: str, chunk: int) -> tuple[int, int] | None:
        """``(rows, hash)`` recorded for ``chunk`` of ``name``, or None (none recorded, or unreadable)."""
        if not self.has_digests or not _has_array(self._group, digest_name(name), self.url):
            return None
        try:
            rows, h = (int(v) for v in np.asarray(self._group[digest_name(name)][chunk]))
        except Exception:
            return None
        return (rows, h) if 0 <= rows <= self.chunk_rows else None

    def _record_digest(self, name: str, chunk: int, rows: int) -> None:
        """Hash the first ``rows`` rows of ``chunk`` as they read back and record them (one writer per chunk)."""
        if not self.has_digests:
            return
        lo = chunk * self.chunk_rows
        values = np.asarray(self._array(name)[lo: lo + rows]) if rows else np.zeros(0)
        self._array(digest_name(name))[chunk] = np.array([rows, digest_values(values)], dtype=np.int64)

    def _check_chunk(self, name: str, chunk: int, values: np.ndarray, digest: np.ndarray | None,
                     done: int | None = None) -> str | None:
        """What is wrong with the decoded ``values`` of ``chunk`` (rows from its start), or None."""
        if digest is not None and digest[0] != NOT_RECORDED:
            rows = int(digest[0])
            if not 0 <= rows <= self.chunk_rows or rows > len(values):
                return f"its digest is unreadable (covers {rows} rows)"
            if digest_values(values[:rows]) != int(digest[1]):
                if not self._chunk_exists(name, chunk):
                    return "its chunk file is missing"
                return "its values differ from the digest recorded when it was written (chunk file altered)"
            return None
        if name == "embeddings" and done and not np.isfinite(values[:done]).all():
            return "rows recorded as embedded read as NaN (chunk file missing?)"
        if name == "ids" and (np.asarray(values) == "").any():
            return "some ids read as empty (chunk file missing?)"
        return None

    def _chunk_values(self, name: str, chunk: int, d: np.ndarray | None = None, done: int | None = None) -> np.ndarray:
        """Decoded rows of one chunk within :attr:`n`, checked against its digest ``d`` (``[rows, hash]``) and,
        for embeddings, its ``done`` rows; raises StoreDamagedError."""
        lo, hi = self._rows_of(chunk)
        arr = self._array(name)
        stop = max(hi, lo + int(d[0])) if d is not None and 0 < d[0] <= self.chunk_rows else hi
        try:
            values = np.asarray(arr[lo: min(stop, arr.shape[0])])
        except Exception as exc:
            raise self._damaged(name, chunk, self._undecodable(name, chunk, exc)) from None
        problem = self._check_chunk(name, chunk, values, d, done)
        if problem:
            raise self._damaged(name, chunk, problem)
        return values[: hi - lo]

    def _damaged(self, name: str, chunk: int, problem: str) -> StoreDamagedError:
        damage = ChunkDamage(name, chunk, self._rows_of(chunk), problem)
        return VerifyReport(self.url, self.n, self.n_chunks, (damage,)).error()

    def _read_range(self, name: str, start: int, stop: int, dtype=None) -> np.ndarray:
        """Rows ``[start, stop)`` of array ``name``, decoded chunk by chunk, each checked against its digest.

        The chunks are copied into one array allocated up front (in ``dtype``, default the stored one): no list
        of parts and no concatenation, so reading the 1.28 M × 512 float16 pool as float32 peaks at the 2.6 GB
        result plus one decoded chunk.
        """
        c = self.chunk_rows
        arr = self._array(name)
        if stop <= start:
            return np.asarray(arr[0:0], dtype=dtype)
        c0, c1 = start // c, (stop - 1) // c + 1
        digests = self._digests(name, c0, c1)
        done = self._done(c0, c1) if name == "embeddings" else None
        out, parts = None, []
        for chunk in range(c0, c1):
            lo = chunk * c
            values = self._chunk_values(name, chunk, None if digests is None else digests[chunk - c0],
                                        None if done is None else int(done[chunk - c0]))
            part = values[max(start - lo, 0): stop - lo]
            if dtype is None and part.dtype.kind not in "biuf":  # strings: widths may differ between chunks
                parts.append(part)
                continue
            if out is None:
                out = np.empty((stop - start, *part.shape[1:]), dtype=part.dtype if dtype is None else dtype)
            a = max(lo, start) - start
            out[a: a + len(part)] = part
        return np.concatenate(parts) if parts else out

    def verify(self) -> VerifyReport:
        """Check every chunk of every array against its digest; report each damaged chunk by array and rows.

        Decodes every chunk (a full read of the store). Finds deleted, truncated, zero-byte and garbage chunk
        files and arrays whose ``zarr.json`` is gone. Chunks without a digest (older stores) are decoded and
        checked for empty ids and NaN in finished rows; :attr:`VerifyReport.undigested` counts them.
        """
        damaged: list[ChunkDamage] = []
        undigested: dict[str, int] = {}
        everything = (0, self.n)
        done = np.zeros(self.n_chunks, dtype=np.int64)
        try:
            bookkeeping = self._array("chunks_done")
        except StoreDamagedError:
            damaged.append(ChunkDamage("chunks_done", None, everything, "array metadata (zarr.json) is missing"))
            bookkeeping = None
        for chunk in range(self.n_chunks if bookkeeping is not None else 0):
            lo, hi = self._rows_of(chunk)
            try:
                done[chunk] = int(bookkeeping[chunk])
            except Exception as exc:
                damaged.append(ChunkDamage("chunks_done", chunk, (lo, hi), f"cannot be decoded ({exc})"))
                continue
            if not 0 <= done[chunk] <= hi - lo:
                damaged.append(ChunkDamage("chunks_done", chunk, (lo, hi), f"records {done[chunk]} rows done"))
                done[chunk] = 0
        for name in TRACKED:
            names = [name] + ([digest_name(name)] if self.has_digests else [])
            missing = [a for a in names if not _has_array(self._group, a, self.url)]
            for a in missing:
                damaged.append(ChunkDamage(a, None, everything, "array metadata (zarr.json) is missing"))
            if name in missing:
                continue
            arr = self._array(name)
            dig = None
            if self.has_digests and not missing:
                darr = self._array(digest_name(name))
                dig = np.full((self.n_chunks, 2), NOT_RECORDED, dtype=np.int64)
                for chunk in range(self.n_chunks):
                    try:
                        dig[chunk] = np.asarray(darr[chunk])
                    except Exception as exc:
                        damaged.append(ChunkDamage(digest_name(name), chunk, self._rows_of(chunk),
                                                   f"cannot be decoded ({exc})"))
            for chunk in range(self.n_chunks):
                lo, hi = self._rows_of(chunk)
                d = None if dig is None else dig[chunk]
                rows = int(d[0]) if d is not None and d[0] != NOT_RECORDED else None
                stop = max(hi, lo + rows) if rows is not None and 0 < rows <= self.chunk_rows else hi
                try:
                    values = np.asarray(arr[lo: min(stop, arr.shape[0])])
                except Exception as exc:
                    damaged.append(ChunkDamage(name, chunk, (lo, hi), self._undecodable(name, chunk, exc)))
                    continue
                problem = self._check_chunk(name, chunk, values, d, int(done[chunk]))
                if problem:
                    damaged.append(ChunkDamage(name, chunk, (lo, hi), problem))
                elif rows is None and (name != "embeddings" or done[chunk]):
                    undigested[name] = undigested.get(name, 0) + 1
        return VerifyReport(self.url, self.n, self.n_chunks, tuple(damaged), undigested)

    def check(self) -> None:
        """Raise :class:`StoreDamagedError` (first damage, count, fix) unless :meth:`verify` finds none."""
        report = self.verify()
        if not report.ok:
            raise report.error()

    # ------------------------------------------------------------------ repair (single writer: the planner)
    def ensure_digests(self) -> None:
        """Start recording digests in a store written before they existed (its old chunks stay undigested)."""
        self._require_writable()
        if self.has_digests:
            return
        meta = dict(self._meta, digests=DIGEST_SCHEME)
        for name in TRACKED:
            self._group.create_array(digest_name(name), shape=_array_shape(digest_name(name), meta, self.n),
                                     **_array_specs(meta)[digest_name(name)])
        self._group.attrs[ATTR_KEY] = meta
        self._meta = meta

    def restore_array(self, name: str) -> None:
        """Write the lost metadata of array ``name`` again; its surviving chunk files read as before."""
        self._require_writable()
        specs = _array_specs(self._meta)
        if name not in specs:
            raise ValueError(f"{name!r} is not an array of a worth store ({sorted(specs)})")
        if _has_array(self._group, name, self.url):
            return
        self._group.create_array(name, shape=_array_shape(name, self._meta, self.n), **specs[name])

    def _chunk_key(self, name: str, chunk: int) -> tuple[Any, str]:
        """``(zarr store, key)`` of row-chunk ``chunk`` of array ``name``."""
        arr = self._array(name)
        key = "/".join(filter(None, [arr.store_path.path, arr.metadata.encode_chunk_key(
            (chunk,) + (0,) * (arr.ndim - 1))]))
        return arr.store_path.store, key

    def _chunk_exists(self, name: str, chunk: int) -> bool:
        zstore, key = self._chunk_key(name, chunk)
        return bool(zarr.core.sync.sync(zstore.exists(key)))

    def _undecodable(self, name: str, chunk: int, exc: BaseException) -> str:
        zstore, key = self._chunk_key(name, chunk)
        try:
            size = zarr.core.sync.sync(zstore.getsize(key))
        except (OSError, FileNotFoundError):
            size = None
        if size == 0:
            return "its chunk file is empty (0 bytes)"
        return f"its chunk file cannot be decoded: truncated or overwritten ({_short(exc)})"

    def _drop_chunk(self, name: str, chunk: int) -> None:
        """Delete one chunk object (it then reads as fill values), so a rewrite never decodes the damaged one."""
        zstore, key = self._chunk_key(name, chunk)
        zarr.core.sync.sync(zstore.delete(key))

    def reset_chunk(self, chunk: int) -> None:
        """Mark embedding chunk ``chunk`` unfinished and drop its rows, so the next embed run writes it afresh."""
        self._require_writable()
        self._drop_chunk("embeddings", chunk)
        if self.has_digests:
            self._drop_chunk(digest_name("embeddings"), chunk)
            self._record_digest("embeddings", chunk, 0)
        self._drop_chunk("chunks_done", chunk)

    def rewrite_chunk(self, name: str, chunk: int, values: np.ndarray) -> None:
        """Replace the leading rows of a damaged ``ids``/``labels``/``split`` chunk and record its digest."""
        self._require_writable()
        if name not in ("ids", "labels", "split"):
            raise ValueError(f"name={name!r}: only ids, labels and split are rewritten; embeddings are re-embedded")
        lo = chunk * self.chunk_rows
        self._drop_chunk(name, chunk)
        if self.has_digests:
            self._drop_chunk(digest_name(name), chunk)
        if len(values):
            self._array(name)[lo: lo + len(values)] = values
        self._record_digest(name, chunk, len(values))

    # ------------------------------------------------------------------ compatibility
    def check_compatible(self, *, encoder: Mapping[str, Any], dim: int, dtype: str, normalize: bool,
                         source_kind: str | None = None, source_spec: str | None = None) -> None:
        """Refuse to mix: raise :class:`StoreMismatchError` unless new rows would match the old ones."""
        fix = f"write to a new store (another --store path), or delete {self.url!r} to rebuild it"
        src = self.source
        if source_kind is not None and src.get("kind") != source_kind:
            raise StoreMismatchError(
                f"source of kind {source_kind!r} does not match the store's source {src.get('spec')!r} "
                f"(kind {src.get('kind')!r}); {fix}"
            )
        if source_spec is not None and src.get("spec") != source_spec:
            raise StoreMismatchError(
                f"source={source_spec!r} is not the store's source {src.get('spec')!r}: append only new items "
                f"of the same source; {fix}"
            )
        mine = self.encoder
        if mine.get("name") != encoder.get("name") or mine.get("params") != dict(encoder.get("params", {})):
            raise StoreMismatchError(
                f"encoder={encoder.get('name')!r} with params {encoder.get('params')} does not match the store "
                f"{self.url!r}, written by encoder {mine.get('name')!r} with params {mine.get('params')}: "
                f"embeddings of different encoders must not be mixed; {fix}"
            )
        if mine.get("version") != encoder.get("version"):
            raise StoreMismatchError(
                f"encoder {encoder.get('name')!r} version {encoder.get('version')!r} differs from the store's "
                f"{mine.get('version')!r}: its embeddings may differ; {fix}"
            )
        if int(dim) != self.dim:
            raise StoreMismatchError(
                f"dim={dim} does not match the store's dimension {self.dim} ({self.url!r}); {fix}"
            )
        if dtype != self.dtype:
            raise StoreMismatchError(f"dtype={dtype!r} does not match the store's {self.dtype!r}; {fix}")
        if bool(normalize) != self.normalize:
            raise StoreMismatchError(
                f"normalize={normalize} does not match the store's normalize={self.normalize}; {fix}"
            )

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self._group.read_only:
            raise ValueError(f"store {self.url!r} was opened read-only: open it with mode='r+' to write")

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """Row range ``[start, stop)`` of embedding chunk ``chunk`` within the current :attr:`n`."""
        if not 0 <= chunk < self.n_chunks:
            raise ValueError(f"chunk={chunk} is outside 0..{self.n_chunks - 1}")
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n)

    def chunks_done(self) -> np.ndarray:
        """Rows already final in each chunk (length :attr:`n_chunks`)."""
        return self._done(0, self.n_chunks)

    def rows_done(self) -> int:
        """Number of rows whose embeddings are final."""
        return int(self.chunks_done().sum())

    def pending_chunks(self) -> list[int]:
        """Chunks with rows still to embed, in order."""
        done = self.chunks_done()
        return [c for c in range(self.n_chunks) if done[c] < self.chunk_bounds(c)[1] - self.chunk_bounds(c)[0]]

    def finished_mask(self) -> np.ndarray:
        """Boolean mask over the :attr:`n` rows: True where the row's embedding is final (per ``chunks_done``)."""
        rows = np.arange(self.n, dtype=np.int64)
        return rows % self.chunk_rows < np.repeat(self.chunks_done(), self.chunk_rows)[: self.n]

    @property
    def is_complete(self) -> bool:
        """True when every row of the store has its embedding."""
        return self.rows_done() == self.n

    def reserve(self, ids: Sequence[str], labels: Sequence[int], split: Sequence[str],
                classes: Sequence[str] | None = None, source: Mapping[str, Any] | None = None) -> tuple[int, int]:
        """Add rows for new items (ids, labels, split now; embeddings later). Single writer only.

        Returns the new rows' range ``[start, stop)``. Old rows are not touched: the arrays are resized and
        only the new rows are written; ``n`` is raised last, so a kill in between leaves the store as it was.
        """
        self._require_writable()
        ids = np.asarray(list(ids), dtype=str)
        labels = np.asarray(labels, dtype=np.int64)
        split = np.asarray(list(split), dtype=str)
        k = len(ids)
        if not (len(labels) == k and len(split) == k):
            raise ValueError(f"ids, labels and split must have equal lengths, got {k}, {len(labels)}, {len(split)}")
        if k and (ids == "").any():
            raise ValueError("ids must be non-empty strings: every item needs a stable id")
        old = self.n
        held = self.ids()  # checked read: a lost ids chunk raises StoreDamagedError here, never appends beside it
        if k and np.isin(ids, held).any():
            dup = ids[np.isin(ids, held)][:3].tolist()
            raise ValueError(f"ids {dup} are already in the store: reserve only new items")
        if k and len(np.unique(ids)) != k:
            raise ValueError("ids must be unique: two items of the source share an id")
        new = old + k
        c = self.chunk_rows
        for name in _array_specs(self._meta):
            self._array(name).resize(_array_shape(name, self._meta, new))
        if k:
            # chunk-aligned pieces, so that even these metadata writes never straddle two chunks needlessly
            lo = old
            while lo < new:
                hi = min((lo // c + 1) * c, new)
                for name, values in (("ids", ids), ("labels", labels), ("split", split)):
                    self._array(name)[lo:hi] = values[lo - old: hi - old]
                    self._record_digest(name, lo // c, hi - (lo // c) * c)
                lo = hi
        meta = dict(self._meta)
        meta["n"] = new
        if classes is not None:
            meta["classes"] = list(classes)
        if source is not None:
            meta["source"] = dict(source)
        meta["updated_at"] = _now()
        self._group.attrs[ATTR_KEY] = meta
        self._meta = meta
        return old, new

    def write_rows(self, chunk: int, start: int, rows: np.ndarray) -> None:
        """Write embeddings for rows ``[start, start+len(rows))`` of chunk ``chunk`` and record them as final.

        ``start`` must be where the chunk's finished rows end (rows are written in order within a chunk), and
        the rows must stay inside the chunk: the contract that keeps parallel writers on disjoint chunks.
        """
        self._require_writable()
        lo, hi = self.chunk_bounds(chunk)
        done = int(self._done(chunk, chunk + 1)[0])
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"rows must be (k, {self.dim}), got shape {rows.shape}: the store's dimension is fixed")
        if start != lo + done:
            raise ValueError(f"start={start}: chunk {chunk} has rows {lo}..{lo + done} done, write from {lo + done}")
        stop = start + len(rows)
        if stop > hi:
            raise ValueError(f"rows {start}..{stop} run past the end {hi} of chunk {chunk}")
        if not np.isfinite(rows).all():
            bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))[:5] + start
            raise ValueError(f"embeddings of rows {bad.tolist()} contain NaN or inf: the encoder failed on them")
        if len(rows) == 0:
            return
        self._array("embeddings")[start:stop] = rows.astype(self.dtype)
        self._record_digest("embeddings", chunk, stop - lo)  # before the bookkeeping that vouches for the rows
        self._array("chunks_done")[chunk] = stop - lo

    # ------------------------------------------------------------------ reading
    def _read1d(self, name: str, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            return self._read_range(name, start, stop)[::step]
        a = self._read_range(name, 0, self.n)
        return a if index is None else a[index]

    def ids(self, index=None) -> np.ndarray:
        """Item ids (str) of all rows, or of ``index`` (a slice reads only those rows)."""
        return _as_str(self._read1d("ids", index))

    def labels(self, index=None) -> np.ndarray:
        """Integer labels (−1 = unknown) of all rows, or of ``index``."""
        return self._read1d("labels", index).astype(np.int64)

    def split(self, index=None) -> np.ndarray:
        """Split names (str) of all rows, or of ``index``."""
        return _as_str(self._read1d("split", index))

    def indices(self, *, split: str | None = None, label: int | None = None) -> np.ndarray:
        """Row indices, optionally only of one split and/or one class."""
        mask = np.ones(self.n, dtype=bool)
        if split is not None:
            mask &= self.split() == split
        if label is not None:
            mask &= self.labels() == int(label)
        return np.flatnonzero(mask)

    def to_numpy(self, *, dtype: str | None = None) -> np.ndarray:
        """All n rows as one NumPy array in ``dtype`` (default: the stored one), read chunk by chunk into it
        (rows not embedded yet are NaN)."""
        if self.n == 0:
            return np.zeros((0, self.dim), dtype=dtype or self.dtype)
        return self._read_range("embeddings", 0, self.n, dtype=dtype)

    def rows(self, index, *, dtype=None) -> np.ndarray:
        """Rows by integer index (array-like) or slice; reads only the chunks that hold them.

        ``dtype`` (default: the stored one) is the dtype of the result, which is allocated once and filled chunk
        by chunk: ``rows(positions, dtype=np.float32)`` of a float16 store never holds more than the float32
        result and one decoded chunk (no float64, no concatenation).
        """
        out_dtype = np.dtype(self.dtype if dtype is None else dtype)
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            if stop <= start:
                return np.zeros((0, self.dim), dtype=out_dtype)
            if step == 1:
                return self._read_range("embeddings", start, stop, dtype=out_dtype)
            index = np.arange(start, stop, step)
        idx = np.asarray(index, dtype=np.int64).ravel()
        if idx.size and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"index out of range for a store of {self.n} rows")
        idx = np.where(idx < 0, idx + self.n, idx)
        if idx.size == 0:
            return np.zeros((0, self.dim), dtype=out_dtype)
        # whole chunks are what Zarr decodes anyway: read each touched chunk once, checked against its digest
        out = np.empty((idx.size, self.dim), dtype=out_dtype)
        chunk_of = idx // self.chunk_rows
        order = np.argsort(chunk_of, kind="stable")  # the result rows grouped by chunk: one pass, not n × chunks
        sorted_chunks = chunk_of[order]
        cuts = (np.flatnonzero(sorted_chunks[1:] != sorted_chunks[:-1]) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, idx.size]):
            where = order[a:b]
            chunk = int(chunk_of[where[0]])
            d = self._digests("embeddings", chunk, chunk + 1)
            values = self._chunk_values("embeddings", chunk, None if d is None else d[0],
                                        int(self._done(chunk, chunk + 1)[0]))
            out[where] = values[idx[where] - chunk * self.chunk_rows]
        return out

    def rows_of_class(self, label: int, *, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, rows)`` of one class (optionally within one split)."""
        idx = self.indices(split=split, label=label)
        return idx, self.rows(idx)

    def to_dask(self):
        """A Dask array over the n rows, one block per Zarr chunk (reads lazily, where the chunks lie)."""
        import dask.array as da

        return da.from_zarr(self._array("embeddings"))[: self.n]

    def to_array(self, xp: str = "numpy"):
        """All rows in the namespace ``xp``: "numpy", "cupy" (GPU) or "dask"."""
        if xp == "numpy":
            return self.to_numpy()
        if xp == "dask":
            return self.to_dask()
        if xp == "cupy":
            import cupy

            if not cupy.is_available():
                raise ValueError("xp='cupy' needs a CUDA GPU; use xp='numpy' on this machine")
            return cupy.asarray(self.to_numpy())
        raise ValueError(f"xp={xp!r}: choose 'numpy', 'cupy' or 'dask'")

    def nbytes_stored(self) -> int:
        """Bytes the store occupies in its storage (all arrays, compressed, plus metadata)."""
        return int(sum(self._array(name).nbytes_stored() for name in _array_specs(self._meta)))

    # ------------------------------------------------------------------ per-item costs
    def cost_names(self) -> list[str]:
        """Names of the per-item cost arrays stored with the pool (see :meth:`write_costs`)."""
        return sorted(self._group["costs"].array_keys()) if "costs" in self._group else []

    def write_costs(self, name: str, values: Sequence[float]) -> None:
        """Store one cost per row under ``costs/<name>`` (tokens, pixels, training steps): what a selection
        budget is spent in. Replaces an earlier array of that name; single writer only."""
        self._require_writable()
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n,):
            raise ValueError(f"costs {name!r} must hold one value per row: shape ({self.n},), got {values.shape}")
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"costs {name!r} must be positive and finite for every row")
        group = self._group.require_group("costs")
        arr = group.create_array(name, shape=(self.n,), chunks=(self.chunk_rows,), dtype="float64",
                                 overwrite=True)
        arr[:] = values

    def costs(self, name: str, index=None) -> np.ndarray:
        """The cost array ``name`` (all rows, or ``index``)."""
        if name not in self.cost_names():
            raise ValueError(f"store {self.url!r} has no cost array {name!r} (it has: {self.cost_names() or 'none'}); "
                             "write one with EmbeddingStore.write_costs")
        a = np.asarray(self._group["costs"][name][: self.n], dtype=np.float64)
        return a if index is None else a[index]

    def class_counts(self) -> dict[int, int]:
        labels, counts = np.unique(self.labels(), return_counts=True)
        return {int(a): int(b) for a, b in zip(labels, counts)}

    def summary(self) -> dict[str, Any]:
        """A JSON-able description: what `worth info` prints and the embed flow's summary artifact shows."""
        split_names, split_counts = np.unique(self.split(), return_counts=True) if self.n else ([], [])
        return {
            "url": self.url,
            "n": self.n,
            "dim": self.dim,
            "dtype": self.dtype,
            "chunk_rows": self.chunk_rows,
            "chunks": self.n_chunks,
            "chunks_complete": self.n_chunks - len(self.pending_chunks()),
            "rows_done": self.rows_done(),
            "complete": self.is_complete,
            "encoder": self.encoder,
            "normalize": self.normalize,
            "source": self.source,
            "classes": self.classes,
            "class_counts": self.class_counts(),
            "split_counts": {str(a): int(b) for a, b in zip(split_names, split_counts)},
            "codec": self._meta.get("codec"),
            "bytes_stored": self.nbytes_stored(),
            "created_at": self._meta.get("created_at"),
            "updated_at": self._meta.get("updated_at"),
        }
