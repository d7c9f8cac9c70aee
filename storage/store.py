"""The embedding store: one Zarr 3 group per pool of items.

Layout (schema version 1)::

    <store>/zarr.json          group attributes under "worth": n, dim, dtype, chunk_rows, encoder, source, ...
    <store>/embeddings         n x m, float32 (float16 on request), chunks of ``chunk_rows`` whole rows
    <store>/labels             n, int64, -1 where the label is unknown
    <store>/ids                n, UTF-8 strings, stable item ids (the key for resume and append)
    <store>/split              n, UTF-8 strings ("train", "test", ...)
    <store>/chunks_done        one int64 per embedding chunk: how many leading rows of that chunk are final

Why this shape:

* Writers only ever write whole rows of one embedding chunk, and each chunk has exactly one writer, so
  parallel writers (Dask workers) never share a chunk. Unaligned parallel writes lose rows (STACK.md).
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
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr
import zarr.storage

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


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def zarr_store(url: str, *, storage_options: Mapping[str, Any] | None = None, read_only: bool = False):
    """The Zarr store object for a local path or an fsspec URL.

    Local paths and ``file://`` URLs use Zarr's :class:`~zarr.storage.LocalStore`, whose writes are atomic
    (temporary file + rename) — the property the resume protocol relies on. Every other URL (``s3://``,
    ``gs://``, ``memory://`` ...) goes through fsspec with ``storage_options`` (for S3: ``endpoint_url``,
    ``key``, ``secret`` ... as s3fs takes them).
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"store={url!r}: give a local path or an fsspec URL such as s3://bucket/pool.zarr")
    if _is_local(url):
        if storage_options:
            raise ValueError("storage_options only apply to fsspec URLs (s3://...), not to a local store path")
        return zarr.storage.LocalStore(_local_path(url), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(url, storage_options=dict(storage_options or {}), read_only=read_only)


def _compressors(codec: str):
    if codec == "blosc-lz4":
        return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    if codec == "zstd":
        return zarr.codecs.ZstdCodec(level=0, checksum=False)
    if codec == "none":
        return None
    raise ValueError(f"codec={codec!r} is not one of {CODECS}")


class EmbeddingStore:
    """A pool's embeddings, labels, ids and split in a Zarr 3 group, with resume bookkeeping.

    Create one with :meth:`create`, open an existing one with :meth:`open`. Reads return NumPy arrays of the
    first :attr:`n` rows (rows not yet embedded are NaN); :meth:`to_dask` and :meth:`to_array` give Dask and
    CuPy views for the selection side.
    """

    def __init__(self, group: zarr.Group, url: str, storage_options: Mapping[str, Any] | None = None):
        if ATTR_KEY not in group.attrs:
            raise ValueError(
                f"store={url!r} is a Zarr group but not a worth embedding store (no '{ATTR_KEY}' attributes): "
                "pass the path of a store made by `worth embed`, or a new path to create one"
            )
        self._group = group
        self.url = url
        self.storage_options = dict(storage_options or {})
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
        url: str,
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
        dim = int(dim)
        chunk_rows = int(chunk_rows)
        if dim < 1:
            raise ValueError(f"dim={dim}: the embedding dimension must be at least 1")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows}: must be a positive number of rows (e.g. 16384)")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: choose one of {DTYPES}")
        compressors = _compressors(codec)
        zstore = zarr_store(url, storage_options=storage_options)
        try:
            group = zarr.open_group(zstore, mode="w-")
        except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError, FileExistsError) as exc:
            raise ValueError(
                f"store={url!r} already exists: open it with EmbeddingStore.open, or choose a new path"
            ) from exc
        group.create_array(
            "embeddings", shape=(0, dim), chunks=(chunk_rows, dim), dtype=dtype, fill_value=np.nan,
            compressors=compressors,
        )
        group.create_array("labels", shape=(0,), chunks=(chunk_rows,), dtype="int64", fill_value=-1)
        group.create_array("ids", shape=(0,), chunks=(chunk_rows,), dtype=str, fill_value="")
        group.create_array("split", shape=(0,), chunks=(chunk_rows,), dtype=str, fill_value="")
        group.create_array("chunks_done", shape=(0,), chunks=(1,), dtype="int64", fill_value=0)
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
            "created_at": _now(),
            "updated_at": _now(),
        }
        group.attrs[ATTR_KEY] = meta
        return cls(group, url, storage_options)

    @classmethod
    def open(cls, url: str, *, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> EmbeddingStore:
        """Open an existing store, read-only (``mode="r"``) or for writing (``mode="r+"``)."""
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}: use 'r' to read or 'r+' to write; create a store with create()")
        zstore = zarr_store(url, storage_options=storage_options, read_only=(mode == "r"))
        try:
            group = zarr.open_group(zstore, mode=mode)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise FileNotFoundError(
                f"store={url!r} does not exist: create it with `worth embed SOURCE --store {url}`"
            ) from exc
        return cls(group, url, storage_options)

    @staticmethod
    def exists(url: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
        """Whether a worth store exists at ``url``."""
        try:
            group = zarr.open_group(zarr_store(url, storage_options=storage_options, read_only=True), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False
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
        return self._group["embeddings"]

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
        if self.n_chunks == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._group["chunks_done"][: self.n_chunks], dtype=np.int64)

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
        if k and np.isin(ids, self.ids()).any():
            dup = ids[np.isin(ids, self.ids())][:3].tolist()
            raise ValueError(f"ids {dup} are already in the store: reserve only new items")
        if k and len(np.unique(ids)) != k:
            raise ValueError("ids must be unique: two items of the source share an id")
        new = old + k
        c = self.chunk_rows
        self._group["embeddings"].resize((new, self.dim))
        for name in ("labels", "ids", "split"):
            self._group[name].resize((new,))
        self._group["chunks_done"].resize((math.ceil(new / c),))
        if k:
            # chunk-aligned pieces, so that even these metadata writes never straddle two chunks needlessly
            lo = old
            while lo < new:
                hi = min((lo // c + 1) * c, new)
                self._group["ids"][lo:hi] = ids[lo - old: hi - old]
                self._group["labels"][lo:hi] = labels[lo - old: hi - old]
                self._group["split"][lo:hi] = split[lo - old: hi - old]
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
        done = int(self._group["chunks_done"][chunk])
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
        self._group["embeddings"][start:stop] = rows.astype(self.dtype)
        self._group["chunks_done"][chunk] = stop - lo

    # ------------------------------------------------------------------ reading
    def _read1d(self, name: str, index) -> np.ndarray:
        arr = self._group[name]
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            return np.asarray(arr[start:stop])[::step] if stop > start else np.asarray(arr[0:0])
        a = np.asarray(arr[: self.n])
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
        """All n rows as one NumPy array (rows not embedded yet are NaN)."""
        a = np.asarray(self._group["embeddings"][: self.n])
        return a.astype(dtype) if dtype else a

    def rows(self, index) -> np.ndarray:
        """Rows by integer index (array-like) or slice; reads only the chunks that hold them."""
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            return np.asarray(self._group["embeddings"][start:stop])[::step]
        idx = np.asarray(index, dtype=np.int64).ravel()
        if idx.size and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"index out of range for a store of {self.n} rows")
        idx = np.where(idx < 0, idx + self.n, idx)
        if idx.size == 0:
            return np.zeros((0, self.dim), dtype=self.dtype)
        order = np.argsort(idx, kind="stable")
        out = np.asarray(self._group["embeddings"].get_orthogonal_selection((idx[order], slice(None))))
        res = np.empty_like(out)
        res[order] = out
        return res

    def rows_of_class(self, label: int, *, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, rows)`` of one class (optionally within one split)."""
        idx = self.indices(split=split, label=label)
        return idx, self.rows(idx)

    def to_dask(self):
        """A Dask array over the n rows, one block per Zarr chunk (reads lazily, where the chunks lie)."""
        import dask.array as da

        return da.from_zarr(self._group["embeddings"])[: self.n]

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
        return int(sum(self._group[name].nbytes_stored() for name in
                       ("embeddings", "labels", "ids", "split", "chunks_done")))

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
