"""Subsets out, in the formats training code reads: a selection manifest or a curated version as ids, a ``.npy``,
a parquet table, or a Hugging Face ``datasets`` subset.

A curation result is exchanged in a handful of shapes, and each is written here from one value, a
:class:`Subset` (the picked items in pick order, with their classes and gains):

``txt``
    the sorted ids, one per line (what ``worth selections --export`` always wrote).
``npy``
    the sorted ids as a NumPy array, no pickle (DataComp hands its subsets to training this way: a sorted array
    of the kept ids, so a loader can test membership with ``np.searchsorted``). Ids that are DataComp uids
    (32 lowercase hex digits) are written as DataComp's own ``u8,u8`` array of 128-bit uids, which its resharder
    reads as it is; any other ids as a 1-D array of str, sorted as strings
    (:func:`storage.manifest.sorted_ids_array`).
``parquet``
    one row per pick, in pick order: ``id``, ``class`` (name, null when unlabelled), ``label``, ``pick_order``
    (0 = the first pick), ``gain`` (the objective's gain when it was picked, null where not recorded) and
    ``store_row``; the schema's metadata names what was exported (manifest or version, objective, value).
``datasets``
    a Hugging Face ``datasets.Dataset`` saved with ``save_to_disk`` (a folder). When the store was embedded from
    a Hugging Face data set (source ``hf:NAME``) this is that data set's own rows, ``Dataset.select``-ed in pick
    order, with ``worth_id``, ``worth_pick_order`` and ``worth_gain`` columns added (prefixed so they never clash
    with the source's columns). Otherwise there is no source data set to select from: the export is a data set
    built from the store's rows (``id``, ``label``, ``class``, ``pick_order``, ``gain``, and ``embedding`` on
    request) and :attr:`Exported.note` says so.

Writes never leave half a file under the name asked for: a file is written beside it and renamed into place,
a ``datasets`` folder is saved beside it and renamed. An existing ``out`` is refused unless ``overwrite``.
Full precision: gains are written as float64, exactly as the manifest holds them.

:func:`read_ids` reads any of the four back (the round trip the tests check). Plain functions, no Prefect.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage.manifest import read_sorted_ids, write_sorted_ids  # the one writer (and reader) of sorted ids

from storage.ref import StoreRef

#: Export formats, in the order they are offered; ``hf`` is accepted as another name for ``datasets``.
FORMATS = ("txt", "npy", "parquet", "datasets")
ALIASES = {"hf": "datasets", "pq": "parquet", "text": "txt"}
SUFFIXES = {".txt": "txt", ".npy": "npy", ".parquet": "parquet", ".pq": "parquet"}
#: Columns added to a Hugging Face source's own rows.
HF_COLUMNS = ("worth_id", "worth_pick_order", "worth_gain")


@dataclass(frozen=True)
class Subset:
    """The picked items of a selection manifest or a curated version, in pick order.

    ``rows`` are store rows (positions), ``labels`` the store's ints (−1: unknown), ``classes`` their names
    (None when unknown), ``gains`` the gain of each pick where recorded (None elsewhere).
    """

    ids: list[str]
    rows: list[int]
    labels: list[int]
    classes: list[str | None]
    gains: list[float | None]
    what: str  #: e.g. "selection pc@v1" or "curated v0002"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if any(len(a) != n for a in (self.rows, self.labels, self.classes, self.gains)):
            raise ValueError(f"{self.what}: ids, rows, labels, classes and gains differ in length")


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote."""

    path: str
    format: str
    n: int
    note: str | None = None


# --------------------------------------------------------------------------------------------- subsets
def _class_name(classes: Sequence[str] | None, label: int) -> str | None:
    if label < 0:
        return None
    return str(classes[label]) if classes and label < len(classes) else str(label)


def _store_lookup(store, ids: Sequence[str], rows: Sequence[int] | None, what: str) -> np.ndarray:
    """Store rows of ``ids``: ``rows`` when the store still holds those ids there, else found by id."""
    ids = [str(i) for i in ids]
    if rows is not None and len(rows) == len(ids):
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or (rows.max() < store.n and store.ids(rows).tolist() == ids):
            return rows
    index = {s: i for i, s in enumerate(store.ids().tolist())}
    missing = [i for i in ids if i not in index]
    if missing:
        raise ValueError(f"{what}: the store {store.url!r} no longer holds items {missing[:3]} "
                         f"({len(missing)} of {len(ids)}): export from the store it was made on")
    return np.asarray([index[i] for i in ids], dtype=np.int64)


def from_manifest(store: StoreRef | str, manifest: Mapping[str, Any]) -> Subset:
    """The picks of a selection manifest (``storage.manifest.read_manifest``), classes looked up in ``store``."""
    from storage.store import EmbeddingStore

    picks = manifest["picks"]
    what = f"selection {manifest['name']}@v{manifest['version']}"
    st = EmbeddingStore.open(store)
    rows = _store_lookup(st, picks["ids"], picks.get("rows"), what)
    labels = st.labels(rows).tolist() if len(rows) else []
    gains = picks.get("gains") or []
    gains = [None if g is None else float(g) for g in gains] if len(gains) == len(rows) else [None] * len(rows)
    return Subset([str(i) for i in picks["ids"]], rows.tolist(), [int(v) for v in labels],
                  [_class_name(st.classes, int(v)) for v in labels], gains, what,
                  {"kind": "selection", "name": manifest["name"], "version": manifest["version"],
                   "objective": manifest.get("objective"), "value": manifest.get("value"),
                   "created": manifest.get("created")})


def curated_gains(folder: str, version: int) -> dict[str, float]:
    """The gain of every item of curated version ``version`` where a night recorded it: each night's additions
    file (``sheets/vNNNN-additions.json``, written by the curate flow) along the chain of ``previous`` links."""
    from storage import curated

    out: dict[str, float] = {}
    record = curated.read_version(folder, version)
    while record is not None:
        path = os.path.join(folder, "sheets", f"v{int(record['version']):04d}-additions.json")
        try:
            with open(path, "rb") as f:
                for a in json.loads(f.read()):
                    out.setdefault(str(a["id"]), float(a["gain"]))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a night without an additions file: its gains stay unknown (null), the ids are still right
        record = curated.read_version(folder, record["previous"]) if record.get("previous") else None
    return out


def from_curated(store: StoreRef | str, folder: str, version: int | None = None) -> Subset:
    """The items of curated version ``version`` (default: ``LATEST``) in ``folder``, in the order they were
    curated (yesterday's set first, then each night's additions)."""
    from storage import curated
    from storage.store import EmbeddingStore

    record = curated.read_version(folder, version)
    if record is None:
        raise ValueError(f"{folder} holds no published curated version yet: run `worth curate` first")
    what = f"curated v{int(record['version']):04d}"
    st = EmbeddingStore.open(store)
    rows = _store_lookup(st, record["ids"], record.get("positions"), what)
    labels = st.labels(rows).tolist() if len(rows) else []
    gains = curated_gains(folder, int(record["version"]))
    classes = record.get("classes")
    names = ([None if c is None else str(c) for c in classes] if classes and len(classes) == len(rows)
             else [_class_name(st.classes, int(v)) for v in labels])
    return Subset([str(i) for i in record["ids"]], rows.tolist(), [int(v) for v in labels], names,
                  [gains.get(str(i)) for i in record["ids"]], what,
                  {"kind": "curated", "version": record["version"], "objective": record.get("objective"),
                   "value": record.get("value"), "accuracy": record.get("accuracy"),
                   "created": record.get("created")})


# --------------------------------------------------------------------------------------------- formats
def resolve_format(out: str, fmt: str | None = None) -> str:
    """The export format: ``fmt`` when given (``hf`` = ``datasets``), else from the suffix of ``out``."""
    if fmt is not None:
        name = ALIASES.get(str(fmt).lower(), str(fmt).lower())
        if name not in FORMATS:
            raise ValueError(f"format={fmt!r} is not an export format: choose one of {', '.join(FORMATS)}")
        return name
    suffix = os.path.splitext(str(out))[1].lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    raise ValueError(
        f"cannot tell the export format from {str(out)!r}: name the file .txt, .npy or .parquet, or give "
        f"--format ({', '.join(FORMATS)}; datasets writes a folder)"
    )


def _table(subset: Subset):
    import pyarrow as pa

    meta = {"worth": json.dumps({"what": subset.what, **subset.meta}, default=str)}
    return pa.table({
        "id": pa.array(subset.ids, pa.string()),
        "class": pa.array(subset.classes, pa.string()),
        "label": pa.array(subset.labels, pa.int64()),
        "pick_order": pa.array(range(len(subset.ids)), pa.int64()),
        "gain": pa.array(subset.gains, pa.float64()),
        "store_row": pa.array(subset.rows, pa.int64()),
    }).replace_schema_metadata(meta)


def _write_parquet(subset: Subset, path: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_table(subset), path)


def _hf_source(store, source_params: Mapping[str, Any] | None):
    """The Hugging Face data set the store was embedded from, loaded again with the options the store recorded
    (``source.options``; ``source_params`` override them) — None for any other source."""
    spec = str(store.source.get("spec") or "")
    if not spec.startswith("hf:"):
        return None, spec
    from worth.data.sources import load_source

    options = {**dict(store.source.get("options") or {}), **dict(source_params or {})}
    try:
        src = load_source(spec, **options)
    except (ValueError, ConnectionError, OSError) as exc:
        raise ValueError(f"the store's source {spec!r} could not be loaded again to select its rows ({exc}); give "
                         "the options it was embedded with (--source-param split=... data_files=...)") from None
    ds = getattr(src.loader, "ds", None)
    if ds is None:
        return None, spec
    return (src, ds), spec


def _write_datasets(subset: Subset, store, path: str, source_params, embeddings: bool) -> str | None:
    import datasets

    hf, spec = _hf_source(store, source_params)
    if hf is not None:
        src, ds = hf
        index = {s: i for i, s in enumerate(src.ids.tolist())}
        missing = [i for i in subset.ids if i not in index]
        if missing:
            raise ValueError(f"{subset.what}: the source {spec!r} as loaded now lacks items {missing[:3]}: give "
                             "the --source-param options the store was embedded with")
        out = ds.select([index[i] for i in subset.ids])
        clash = [c for c in HF_COLUMNS if c in out.column_names]
        if clash:
            raise ValueError(f"the source {spec!r} already has columns {clash}: export as parquet instead")
        out = out.add_column("worth_id", subset.ids)
        out = out.add_column("worth_pick_order", list(range(len(subset.ids))))
        out = out.add_column("worth_gain", [np.nan if g is None else g for g in subset.gains])
        note = None
        if embeddings:
            out = out.add_column("worth_embedding", store.rows(np.asarray(subset.rows, dtype=np.int64)).tolist())
    else:
        columns: dict[str, Any] = {"id": subset.ids, "label": subset.labels, "class": subset.classes,
                                   "pick_order": list(range(len(subset.ids))),
                                   "gain": [np.nan if g is None else g for g in subset.gains]}
        if embeddings:
            columns["embedding"] = store.rows(np.asarray(subset.rows, dtype=np.int64)).tolist()
        out = datasets.Dataset.from_dict(columns)
        note = (f"the store's source {spec or '(unnamed)'!r} is not a Hugging Face data set, so there are no source "
                "rows to select: wrote a data set of the store's ids, labels and classes"
                + (" and embeddings" if embeddings else " (add --embeddings for the vectors)"))
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:  # a quiet terminal: one line says what was written, no "Saving the dataset" bars
        datasets.disable_progress_bars()
    try:
        out.save_to_disk(path)
    finally:
        if quiet:
            datasets.enable_progress_bars()
    return note


def export(subset: Subset, store: StoreRef | str, out: str, fmt: str | None = None, *, overwrite: bool = False,
           source_params: Mapping[str, Any] | None = None, embeddings: bool = False) -> Exported:
    """Write ``subset`` to ``out`` in format ``fmt`` (default: from the suffix of ``out``).

    Parameters
    ----------
    store
        The embedding store the subset was made on (its labels, classes, embeddings and source).
    overwrite
        Replace an existing ``out``; without it an existing ``out`` is refused (``FileExistsError``).
    source_params
        ``datasets`` from an ``hf:`` source: options to load the source again with (``split``, ``data_files``),
        over those the store recorded when it was embedded (a store embedded before it recorded them needs them
        all).
    embeddings
        ``datasets``: add each pick's embedding as a column.

    Raises
    ------
    ValueError
        An unknown format (the message lists :data:`FORMATS`), or a store that no longer holds the ids.
    FileExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    from storage.store import EmbeddingStore

    fmt = resolve_format(out, fmt)
    out = os.fspath(out)
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"{out} exists: choose another --out, or pass --force to replace it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{out}: the folder {parent} does not exist; create it first")
    st = EmbeddingStore.open(store)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.{uuid.uuid4().hex}.tmp")
    note = None
    try:
        if fmt in ("txt", "npy"):
            write_sorted_ids(subset.ids, tmp, fmt)
        elif fmt == "parquet":
            _write_parquet(subset, tmp)
        else:
            note = _write_datasets(subset, st, tmp, source_params, embeddings)
        if os.path.isdir(out) and not os.path.islink(out):  # overwrite of a datasets folder: move it aside first
            aside = f"{tmp}.old"
            os.rename(out, aside)
            os.rename(tmp, out)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
    return Exported(out, fmt, len(subset.ids), note)


# --------------------------------------------------------------------------------------------- reading back
def read_ids(path: str, fmt: str | None = None) -> list[str]:
    """The ids of an export, in the file's order (sorted for txt/npy, pick order for parquet/datasets)."""
    path = os.fspath(path)
    if fmt is None and os.path.isdir(path):
        fmt = "datasets"
    fmt = resolve_format(path, fmt)
    if fmt in ("txt", "npy"):
        return read_sorted_ids(path, fmt)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    import datasets

    ds = datasets.load_from_disk(path)
    column = "worth_id" if "worth_id" in ds.column_names else "id"
    return [str(i) for i in ds[column]]
