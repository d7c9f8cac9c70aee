"""Selection manifests: what a selection picked, kept with the embedding store, versioned, never overwritten.

Layout (beside the Zarr arrays, inside the store's folder or prefix)::

    <store>/selections/<NAME>/v0001.json
    <store>/selections/<NAME>/v0002.json      a later selection of the same name (other data, k, params ...)

A manifest is plain JSON (schema in ``docs/manifests.md``, :data:`SCHEMA_VERSION`): readable with nothing but a
JSON parser, which is how training jobs consume it (DataComp hands subsets to training as id lists;
:func:`export_ids` writes exactly that). The picks are JSON lists too: at ImageNet scale (128,117 picks) a
manifest is about 10 MB, so no sibling array files are needed.

Writes are atomic and exclusive:

* local paths: the JSON goes to a temporary file in the same folder, is flushed to disk, and is published with
  ``link(2)``. Like ``open(O_CREAT | O_EXCL)`` the link fails when the name exists, but unlike an exclusive create
  followed by writes, a reader never sees a half-written file: the name appears with its full content or not at
  all. A process killed before the link leaves only a hidden temporary file, which readers ignore.
* fsspec URLs (``s3://``, ``gs://``, ``memory://``): the JSON is written in one ``put`` with mode ``"xb"``
  (exclusive create; on S3 a conditional ``If-None-Match`` write, so a whole object appears or none). A
  filesystem that refuses mode ``"x"`` gets a temporary key, a check that the version is still free, and a move:
  there a window between the check and the move remains, so keep one writer per store (the select flow writes
  every manifest from its own process).

A writer that finds its version taken (another run won the race) writes the next version instead: nothing is
ever overwritten. Manifest names must be safe path components (:func:`check_name`).

One manifest per job key: a record with a ``key`` is published under that key's lock
(:func:`storage.lock.writer_lock` on ``selections/.keys/<digest>``), and a writer that finds, under the lock, a
readable manifest with its key returns that one instead of writing a second (two concurrent ``worth select``
runs of one spec used to write v0001 and v0002 of one job, issue 21).

A damaged file (empty, truncated, not JSON — a disk filled up, a hand edit) is reported by its path with the
repair (:class:`DamagedManifestError`); listing and key look-ups skip it and name it, so the other records
stay usable.

This module knows nothing of ``worth`` or Prefect: the select flow builds the record, this module keeps it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from storage import atomic
from storage import lock as _lock
from storage.ref import StoreRef
from storage.store import EmbeddingStore

SCHEMA_VERSION = 1
SELECTIONS = "selections"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")
EXPORT_FORMATS = ("npy", "txt")


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the manifests' ``created``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_name(name: Any) -> str:
    """Return ``name`` if it is a safe selection name, else raise ``ValueError`` saying what is allowed.

    A name becomes a folder of the store, so it must be one path component: letters, digits, ``.``, ``_`` and
    ``-``, starting with a letter or digit, at most 128 characters (no ``/``, no ``..``, no spaces).
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"selection name {name!r} is not a safe path component: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'vendi-k500'), at most 128 characters"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"NAME"`` → ``(NAME, None)`` (the latest version); ``"NAME@v3"`` or ``"NAME@3"`` → ``(NAME, 3)``."""
    name, sep, version = str(ref).partition("@")
    check_name(name)
    if not sep:
        return name, None
    digits = version[1:] if version[:1] in ("v", "V") else version
    if not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"manifest reference {ref!r}: write NAME or NAME@vN with a version N >= 1, e.g. {name}@v2")
    return name, int(digits)


def store_fingerprint(store: EmbeddingStore) -> str:
    """A digest of what a selection over ``store`` depends on: its identity, size and finished rows.

    Hashes the attributes fixed at creation (schema, dimension, dtype, chunk size, codec, normalisation, encoder
    identity, source, classes, creation time), the row count ``n`` and the completed-chunk record. Appending
    items or finishing chunks changes it; listing or writing manifests does not. Rows are not read, so it costs
    one small read even for a store of millions of rows.
    """
    meta = store.attrs
    fixed = {k: meta.get(k) for k in ("schema_version", "dim", "dtype", "chunk_rows", "codec", "normalize",
                                      "encoder", "source", "classes", "created_at")}
    h = hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode())
    h.update(f"n={store.n}".encode())
    h.update(np.ascontiguousarray(store.chunks_done(), dtype="<i8").tobytes())
    return "sha256:" + h.hexdigest()[:32]


class DamagedManifestError(ValueError):
    """A manifest file that is not a manifest (empty, truncated, not JSON): its path and the repair.

    ``key`` is the job key if it could still be read from the damaged text (a truncated file keeps its head),
    else None; ``path`` is where the file lies.
    """

    def __init__(self, path: str, why: str, key: str | None = None):
        self.path, self.why, self.key = path, why, key
        super().__init__(f"manifest file {path} is damaged ({why}): move it aside or delete it; rerunning its "
                         "selection recomputes it")


_KEY_TEXT = re.compile(rb'"key":\s*"([0-9a-f]{16,128})"')


def _parse(raw: bytes, path: str) -> dict[str, Any]:
    """The manifest in ``raw`` (read from ``path``), or :class:`DamagedManifestError` naming the path."""
    if not raw.strip():
        raise DamagedManifestError(path, "the file is empty")
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        raise DamagedManifestError(path, "not text: not a JSON manifest") from None
    except json.JSONDecodeError as exc:
        found = _KEY_TEXT.search(raw)
        raise DamagedManifestError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                                   "truncated or overwritten", found.group(1).decode() if found else None) from None
    if not isinstance(record, dict) or not isinstance(record.get("picks"), dict):
        raise DamagedManifestError(path, "valid JSON, but not a selection manifest (no 'picks')")
    return record


# --------------------------------------------------------------------------------------------- file access
class _Folder:
    """The ``selections/`` folder of one store, local or fsspec, with the few operations manifests need."""

    def __init__(self, store: StoreRef | str, storage_options: Mapping[str, Any] | None = None):
        ref = StoreRef.of(store, storage_options)
        self.local = ref.is_local
        if self.local:
            self.fs = None
            self.root = os.path.join(ref.path, SELECTIONS)
        else:
            self.fs, path = ref.filesystem()
            self.root = path.rstrip("/") + "/" + SELECTIONS

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts) if self.local else "/".join((self.root, *parts))

    def listdir(self, path: str) -> list[str]:
        if self.local:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        if not self.fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))

    def read(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        return self.fs.cat_file(path)

    def versions(self, name: str) -> list[int]:
        return sorted(int(m.group(1)) for f in self.listdir(self.path(name)) if (m := _VERSION_FILE.match(f)))

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Publish ``data`` at ``path`` atomically; ``FileExistsError`` if something is there already."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic.create_exclusive(path, data)
            return
        try:
            with self.fs.open(path, "xb") as f:
                f.write(data)
        except (ValueError, NotImplementedError):  # this filesystem has no exclusive create: temp key + move
            tmp = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
            self.fs.pipe_file(tmp, data)
            try:
                if self.fs.exists(path):
                    raise FileExistsError(path) from None
                self.fs.mv(tmp, path)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm_file(tmp)


def _encode(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, indent=1, sort_keys=False, allow_nan=False) + "\n").encode()


# --------------------------------------------------------------------------------------------- public API
def write_manifest(store_url: StoreRef | str, name: str, record: Mapping[str, Any], *,
                   storage_options: Mapping[str, Any] | None = None, max_tries: int = 100) -> dict[str, Any]:
    """Write ``record`` as the next version of selection ``name``; return the manifest as written.

    ``name``, ``version`` and ``schema_version`` are set here (the version is the first free one, so a run that
    loses a race to another writer takes the next). Existing versions are never touched. A record with a job
    ``key`` is written under that key's lock, and only if no readable manifest has the key yet: otherwise that
    manifest is returned (a concurrent run of the same job published first), so one job key has one record.

    Raises
    ------
    ValueError
        On an unsafe name, or a record that is not JSON (NaN and infinities are refused: ``null`` them first).
    """
    check_name(name)
    store = StoreRef.of(store_url, storage_options)
    folder = _Folder(store)
    key = record.get("key")
    if not isinstance(key, str) or not key:
        return _write_next(folder, name, record, max_tries)
    with _key_lock(folder, key, store.options):
        try:
            existing = find_by_key(store, key)
        except DamagedManifestError:  # only a damaged copy of this job: the new record replaces it
            existing = None
        if existing is not None:
            return existing
        return _write_next(folder, name, record, max_tries)


KEY_LOCK_WAIT = 60.0
"""Seconds a writer waits for another writer of the same job key (it holds the lock for one listing and one
write)."""


# writer_lock is re-entrant within a process: threads of one process writing one key queue here first
_IN_PROCESS: dict[str, threading.Lock] = {}
_IN_PROCESS_GUARD = threading.Lock()


@contextlib.contextmanager
def _key_lock(folder: _Folder, key: str, storage_options) -> Iterator[None]:
    """The lock of job ``key``: :func:`storage.lock.writer_lock` on ``selections/.keys/<digest>``, waited for."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    keys = folder.path(".keys")
    if folder.local:
        os.makedirs(keys, exist_ok=True)
    target = folder.path(".keys", digest) if folder.local else f"{folder.fs.unstrip_protocol(keys)}/{digest}"
    deadline = time.monotonic() + KEY_LOCK_WAIT
    with _IN_PROCESS_GUARD:
        mine = _IN_PROCESS.setdefault(target, threading.Lock())
    with mine, contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(_lock.writer_lock(target, None if folder.local else storage_options,
                                                     command="write-manifest"))
                break
            except _lock.StoreLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield


def _write_next(folder: _Folder, name: str, record: Mapping[str, Any], max_tries: int) -> dict[str, Any]:
    version = (folder.versions(name) or [0])[-1] + 1
    for _ in range(max_tries):
        out = {"schema_version": SCHEMA_VERSION, "name": name, "version": version, **record}
        try:
            data = _encode(out)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"manifest {name!r} is not plain JSON ({exc}): convert arrays to lists, NaN to None")
        try:
            folder.create_exclusive(folder.path(name, f"v{version:04d}.json"), data)
        except FileExistsError:
            version += 1
            continue
        return out
    raise RuntimeError(f"could not find a free version of {name!r} after {max_tries} tries: too many writers")


def read_manifest(store_url: StoreRef | str, name: str, version: int | None = None, *,
                  storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest ``name`` at ``version`` (default: the latest). ``name`` may be ``NAME@vN``."""
    ref_name, ref_version = parse_ref(name)
    if ref_version is not None and version is not None and ref_version != version:
        raise ValueError(f"name={name!r} and version={version} disagree: give the version once")
    version = version if version is not None else ref_version
    store = StoreRef.of(store_url, storage_options)
    folder = _Folder(store)
    versions = folder.versions(ref_name)
    if not versions:
        known = ", ".join(sorted({m["name"] for m in list_manifests(store)}))
        raise ValueError(
            f"no selection named {ref_name!r} in {store.url!r} (selections there: {known or 'none'}); "
            "list them with `worth selections --store STORE`"
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise ValueError(f"selection {ref_name!r} has versions {versions}, not {version}: pick one of them")
    path = folder.path(ref_name, f"v{version:04d}.json")
    manifest = _parse(folder.read(path), manifest_path(store_url, ref_name, version, storage_options=storage_options))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"manifest {ref_name}@v{version} has schema version {manifest.get('schema_version')!r}; this worth "
            f"reads version {SCHEMA_VERSION}"
        )
    return manifest


def manifest_path(store_url: StoreRef | str, name: str, version: int, *,
                  storage_options: Mapping[str, Any] | None = None) -> str:
    """Where version ``version`` of selection ``name`` lives (a local path, or the fsspec path in its bucket)."""
    store = StoreRef.of(store_url, storage_options)
    folder = _Folder(store)
    path = folder.path(check_name(name), f"v{int(version):04d}.json")
    return path if folder.local else f"{store.url.split('://', 1)[0]}://{path.lstrip('/')}"


def list_manifests(store_url: StoreRef | str, *, storage_options: Mapping[str, Any] | None = None,
                   damaged: list | None = None) -> list[dict[str, Any]]:
    """One summary per readable manifest of the store (name, version, key, regime, objective, k, value, created),
    by name then version.

    A damaged file is skipped: appended to ``damaged`` (a list the caller passes) as a
    :class:`DamagedManifestError`, or warned about when no list is given.

    Raises
    ------
    FileNotFoundError
        When no store is there, naming the path: it does not exist, is a file, or is a folder holding neither an
        embedding store nor selections.
    """
    store = StoreRef.of(store_url, storage_options)
    folder = _Folder(store)
    make = f"check the path, or make it with `worth embed --store {store.url} ...` first"
    if store.is_local and not os.path.exists(store.path):
        raise FileNotFoundError(f"store {store.url!r} does not exist: {make}")
    if store.is_local and not os.path.isdir(store.path):
        raise FileNotFoundError(f"store {store.url!r} is a file, not an embedding store (a folder): {make}")
    if not folder.listdir(folder.root) and not store.exists():
        raise FileNotFoundError(f"store {store.url!r} is not an embedding store (no store and no selections "
                                f"there): {make}")
    out = []
    for name in folder.listdir(folder.root):
        if not _NAME.match(name):
            continue
        for version in folder.versions(name):
            shown = manifest_path(store_url, name, version, storage_options=storage_options)
            try:
                m = _parse(folder.read(folder.path(name, f"v{version:04d}.json")), shown)
            except DamagedManifestError as exc:
                if damaged is None:
                    import warnings

                    warnings.warn(str(exc), stacklevel=2)
                else:
                    damaged.append(exc)
                continue
            out.append({"name": name, "version": version, "key": m.get("key"), "regime": m.get("regime"),
                        "objective": m.get("objective"), "k": len(m.get("picks", {}).get("ids", [])),
                        "value": m.get("value"), "created": m.get("created"), "path": shown})
    return out


def find_by_key(store_url: StoreRef | str, key: str, *,
                storage_options: Mapping[str, Any] | None = None) -> dict | None:
    """The latest readable manifest whose job key is ``key`` (any name), or None: how a rerun finds finished jobs.

    Raises
    ------
    DamagedManifestError
        When no readable manifest has the key but a damaged file still shows it (a truncated manifest of this
        job): its path and the repair.
    """
    store = StoreRef.of(store_url, storage_options)
    damaged: list = []
    hits = [m for m in list_manifests(store, damaged=damaged) if m["key"] == key]
    if not hits:
        for exc in damaged:
            if exc.key == key:
                raise exc
        return None
    last = max(hits, key=lambda m: (m["created"] or "", m["name"], m["version"]))
    return read_manifest(store, last["name"], last["version"])


def sorted_ids(manifest: Mapping[str, Any]) -> list[str]:
    """The picked item ids of a manifest, sorted (the order carries no meaning for training)."""
    return sorted(str(i) for i in manifest["picks"]["ids"])


#: A DataComp uid: 32 lowercase hex digits (a 128-bit hash), as in DataComp's metadata parquets.
_DATACOMP_UID = re.compile(r"^[0-9a-f]{32}$")
#: DataComp's subset files: a sorted structured array of uids as (high, low) 64-bit halves.
DATACOMP_DTYPE = np.dtype("u8,u8")


def sorted_ids_array(ids: Sequence[str]) -> np.ndarray:
    """The sorted ids as a ``.npy`` export holds them.

    Ids that are all DataComp uids (32 lowercase hex digits) become DataComp's own subset array, a structured
    array of dtype ``u8,u8`` (each uid's high and low 64 bits), sorted, which DataComp's resharder reads as it is;
    any other ids a 1-D array of str (NumPy unicode, no pickle), sorted as strings. Both sort in the order of the
    ids as strings, so ``np.searchsorted`` tests membership either way.
    """
    ids = sorted(str(i) for i in ids)
    if ids and all(_DATACOMP_UID.match(i) for i in ids):
        return np.array([(int(i[:16], 16), int(i[16:], 16)) for i in ids], dtype=DATACOMP_DTYPE)
    return np.asarray(ids, dtype=str)


def write_sorted_ids(ids: Sequence[str], path: str, fmt: str) -> str:
    """Write ``ids`` sorted to ``path`` as ``npy`` (:func:`sorted_ids_array`, no pickle) or ``txt`` (one per
    line)."""
    if fmt == "npy":
        with open(path, "wb") as f:  # np.save on a path would append .npy to any other suffix
            np.save(f, sorted_ids_array(ids), allow_pickle=False)
    elif fmt == "txt":
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{i}\n" for i in sorted(str(i) for i in ids))
    else:
        raise ValueError(f"format={fmt!r}: sorted ids are written as npy or txt")
    return str(path)


def read_sorted_ids(path: str, fmt: str | None = None) -> list[str]:
    """The ids of a file :func:`write_sorted_ids` wrote: ``npy`` (of str, or of DataComp uids, read back as their
    hex strings) or ``txt``; ``fmt`` defaults to ``npy`` for a ``.npy`` file, else ``txt``."""
    if fmt is None:
        fmt = "npy" if str(path).lower().endswith(".npy") else "txt"
    if fmt == "npy":
        arr = np.load(path, allow_pickle=False)
        if arr.dtype == DATACOMP_DTYPE:
            return [f"{int(hi):016x}{int(lo):016x}" for hi, lo in arr.tolist()]
        return [str(i) for i in arr.tolist()]
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def export_ids(manifest: Mapping[str, Any], path: str, fmt: str | None = None) -> str:
    """Write the manifest's sorted ids to ``path``: ``npy`` (:func:`sorted_ids_array`: an array of str, or
    DataComp's ``u8,u8`` uids, no pickle) or ``txt`` (one per line). ``fmt`` defaults to the file's suffix. Returns the path written."""
    fmt = fmt or os.path.splitext(str(path))[1].lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format={fmt!r}: choose one of {', '.join(EXPORT_FORMATS)} (or name the file .npy/.txt)")
    return write_sorted_ids(sorted_ids(manifest), str(path), fmt)
