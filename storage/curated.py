"""Curated versions: the set a nightly curation keeps, one immutable JSON file per night, and a LATEST pointer.

Layout (a local folder, by default ``<store>.curated`` beside the store — not inside it, because the first
night takes the lock before the embed step creates the store, and Zarr refuses to create a store in a folder
that holds anything)::

    pool.zarr.curated/v0001.json     night 1: ids, store positions and classes of the curated set, the store's row count
    pool.zarr.curated/v0002.json     night 2: yesterday's set plus tonight's additions (v0001.json is never touched)
    pool.zarr.curated/LATEST         "2\\n": the version readers and the next night start from; replaced last
    pool.zarr.curated/LOCK           present while a curate run works on this folder (who holds it: JSON)

Why this shape:

* A version is published in two steps: the file ``vNNNN.json`` appears with its full content or not at all
  (written to a temporary file, flushed, then ``link(2)``-ed, which fails when the name exists — so a version is
  never overwritten), then ``LATEST`` is replaced by an atomic rename. A process killed between the two leaves
  an unreferenced version file; the next night starts from ``LATEST`` and writes past it.
* Publishing is a compare-and-swap: :func:`publish` is told which version the night started from and refuses
  (:class:`CurationConflict`) when ``LATEST`` moved meanwhile. Two runs that each hold the same yesterday cannot
  both publish; the loser is told who won.
* The lock (:func:`lock`) keeps a second run of the same curation from even starting its work: it is
  :mod:`storage.lock`'s lock (the one store writers take), an exclusive create of ``LOCK`` holding the owner's
  host, PID and process start time. A lock whose owner is a dead process of this host (a kill -9, a crashed
  machine's restart) is stale and taken over; a live owner makes the newcomer fail at once with
  :class:`CurationLocked`, naming the owner.

The folder must be local (or a shared POSIX mount): ``link``, ``rename`` and PID checks are what make the
guarantees. The store itself may be remote (``s3://``); give the curated folder as a local path then.
This module knows nothing of ``worth`` or Prefect: the curate flow builds the records, this module keeps them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from storage import atomic
from storage import lock as writer_locks
from storage.ref import StoreRef, is_local_url, local_path

SCHEMA_VERSION = 1
SUFFIX = ".curated"
LATEST = "LATEST"
LOCK = "LOCK"
CLAIMS = ".claims"  # one file per base version: which run moved LATEST on from it
_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")
#: Keys every version record carries (what a reader may rely on).
REQUIRED = ("ids", "positions", "classes", "store_rows", "objective", "value", "accuracy", "flow_run_id",
            "mlflow_run_id")


class CurationConflict(RuntimeError):
    """Another run published a version since this one started: this night's version is not written."""


class CurationLocked(RuntimeError):
    """Another live curate run holds the folder's lock."""


def curated_dir(store_url: StoreRef | str, curated: str | None = None) -> str:
    """The folder of curated versions: ``curated`` when given, else ``<store>.curated`` for a local store.

    Raises
    ------
    ValueError
        For a remote store (``s3://...``) without a local ``curated`` folder: the version protocol needs
        ``link``/``rename``/PIDs of a local filesystem. For a path that is a file, not a folder.
    """
    if curated:
        if not is_local_url(curated):
            raise ValueError(f"curated={curated!r}: give a local folder (or a shared POSIX mount), not a URL")
        return _a_folder(local_path(curated), "curated")
    store = StoreRef.of(store_url)
    if not store.is_local:
        raise ValueError(
            f"store={store.url!r} is remote: give curated=LOCAL_FOLDER for the curated versions (they need atomic "
            "link/rename of a local filesystem)"
        )
    return _a_folder(store.beside(SUFFIX).path, "the default curated folder")


def _a_folder(path: str, what: str) -> str:
    """``path``, unless something that is not a folder is there (a file): then a ``ValueError`` with the fix."""
    if os.path.lexists(path) and not os.path.isdir(path):
        name = f"curated={path!r}" if what == "curated" else f"{what} {path!r}"
        raise ValueError(f"{name} is a file, not a folder of curated versions: move the file away, or give "
                         "curated= (--curated) another folder (made when missing)")
    return path


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def version_path(folder: str, version: int) -> str:
    """Path of version ``version`` in ``folder``."""
    return os.path.join(folder, f"v{int(version):04d}.json")


def versions(folder: str) -> list[int]:
    """Version numbers whose file exists (published or left unreferenced by a killed run), ascending."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(folder) if (m := _VERSION_FILE.match(f)))


def latest_version(folder: str) -> int:
    """The version ``LATEST`` points at (0: nothing published yet)."""
    try:
        with open(os.path.join(folder, LATEST), encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit():
        raise ValueError(f"{os.path.join(folder, LATEST)} holds {text!r}, not a version number: restore it from "
                         "the newest vNNNN.json that a night finished (its number, one line)")
    return int(text)


def _finish_claimed(folder: str) -> None:
    """Point ``LATEST`` at a version whose run claimed the swap but was killed before writing ``LATEST``.

    The claimed version file was complete before its claim was made, so rolling forward loses nothing and keeps
    the next night from being refused for good.
    """
    while True:
        current = latest_version(folder)
        try:
            with open(os.path.join(folder, CLAIMS, f"v{current:04d}"), encoding="ascii") as f:
                claimed = int(f.read().strip())
        except FileNotFoundError:
            return
        atomic.replace(os.path.join(folder, LATEST), f"{claimed}\n".encode("ascii"))


def recover_latest(folder: str) -> int:
    """Bring ``LATEST`` up to date before a night reads it, under the folder's lock; returns the version it names.

    A run killed after claiming the swap (or a ``LATEST`` deleted by hand) is rolled forward from the claims
    (:func:`_finish_claimed`), so the night builds on the newest published version instead of starting over and
    failing to publish. Version files with no ``LATEST`` and no claim to rebuild it from are refused, naming the
    repair: the folder was edited by hand and which version is current cannot be known.
    """
    if not os.path.isdir(folder):
        return 0
    if os.path.isdir(os.path.join(folder, CLAIMS)):
        _finish_claimed(folder)
    current = latest_version(folder)
    found = versions(folder)
    if current == 0 and found:
        raise ValueError(f"{os.path.join(folder, LATEST)} is missing while {folder} holds "
                         f"{', '.join(f'v{v:04d}' for v in found)}: write the newest good version's number into it "
                         f"(e.g. `echo {found[-1]} > {os.path.join(folder, LATEST)}`) and rerun")
    return current


def _parse_version(raw: bytes, path: str, version: int, folder: str) -> dict[str, Any]:
    """The curated record in ``raw``, or a ``ValueError`` naming the damaged file and the repair."""
    why = None
    if not raw.strip():
        why = "the file is empty"
    else:
        try:
            record = json.loads(raw)
        except UnicodeDecodeError:
            why = "not text"
        except json.JSONDecodeError as exc:
            why = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; truncated or overwritten"
        else:
            if isinstance(record, dict):
                return record
            why = "valid JSON, but not a curated version record"
    previous = f"v{version - 1:04d}" if version > 1 else "none"
    try:
        latest = latest_version(folder)
    except ValueError:
        latest = version
    if version < latest:  # an older night: LATEST and the nights after it are whole
        raise ValueError(
            f"curated version file {path} is damaged ({why}): restore it from a backup, or move it aside; "
            f"the later versions, LATEST (v{latest:04d}) included, are whole, so the next night is not affected"
        )
    raise ValueError(
        f"curated version file {path} is damaged ({why}): restore it from a backup, or move it aside and point "
        f"{os.path.join(folder, LATEST)} at the previous good version (here {previous}); the next night "
        "curates from there"
    )


def read_version(folder: str, version: int | None = None) -> dict[str, Any] | None:
    """Version ``version`` (default: the one ``LATEST`` points at); None when nothing is published yet."""
    version = latest_version(folder) if version is None else int(version)
    if version == 0:
        return None
    path = version_path(folder, version)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist but {os.path.join(folder, LATEST)} points at it: the folder was "
                         "edited by hand; restore the file or point LATEST at an existing version") from None
    record = _parse_version(raw, path, version, folder)
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema version {record.get('schema_version')!r}; this worth reads "
                         f"version {SCHEMA_VERSION}")
    return record


def publish(folder: str, record: Mapping[str, Any], *, expected_latest: int) -> dict[str, Any]:
    """Write ``record`` as the version after ``expected_latest`` and point ``LATEST`` at it, last.

    Parameters
    ----------
    folder : str
        The curated folder (created when missing).
    record : mapping
        The night's record; it must hold every key of :data:`REQUIRED`. ``schema_version``, ``version``,
        ``previous`` and ``created`` are set here.
    expected_latest : int
        The version the night started from (0 for the first night): the compare of the compare-and-swap.

    Returns
    -------
    dict
        The record as written.

    Raises
    ------
    CurationConflict
        ``LATEST`` is no longer ``expected_latest`` (another run published meanwhile), or another writer took
        the version number first. Nothing is written then.
    ValueError
        A record missing required keys, or not plain JSON (NaN is refused).
    """
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"the curated record lacks {missing}: every version holds {list(REQUIRED)}")
    os.makedirs(os.path.join(folder, CLAIMS), exist_ok=True)
    _finish_claimed(folder)
    current = latest_version(folder)
    if current != expected_latest:
        raise CurationConflict(
            f"{folder}: LATEST is v{current:04d} but this run started from v{expected_latest:04d}; another curate "
            "run published meanwhile, so this run publishes nothing. Rerun to curate on top of the new version."
        )
    # the first number past LATEST and past any file a killed run left unreferenced: never overwrite
    version = max([expected_latest, *versions(folder)]) + 1
    out = {"schema_version": SCHEMA_VERSION, "version": version, "previous": expected_latest or None,
           "created": now(), **record}
    try:
        data = (json.dumps(out, indent=1, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the curated record is not plain JSON ({exc}): convert arrays to lists, NaN to None")
    try:
        atomic.create_exclusive(version_path(folder, version), data)
    except FileExistsError:
        raise CurationConflict(f"{version_path(folder, version)} was created by another run while this one "
                               "published; this run publishes nothing. Rerun to curate on top of it.") from None
    # The swap itself: one run only may move LATEST on from expected_latest. The claim is an exclusive file per
    # base version, so of two runs that both linked a version file (a late one numbers past the early one's
    # file), exactly one claims the base; the other's file stays unreferenced and the next night writes past it.
    try:
        atomic.create_exclusive(os.path.join(folder, CLAIMS, f"v{expected_latest:04d}"), f"{version}\n".encode())
    except FileExistsError:
        raise CurationConflict(f"{folder}: another run published on top of v{expected_latest:04d} while "
                               f"v{version:04d} was written; that file stays unreferenced. Rerun.") from None
    atomic.replace(os.path.join(folder, LATEST), f"{version}\n".encode("ascii"))
    return out


def history(folder: str, damaged: list | None = None) -> list[dict[str, Any]]:
    """Published versions from the first to ``LATEST``, following each record's ``previous`` link.

    A damaged version file raises its ``ValueError`` (path and repair) — or, with a ``damaged`` list, is
    appended to it and skipped: the walk goes on at the newest version file below it (the link it held is
    lost with it; a night's ``previous`` is that file unless a killed run left one unreferenced between them),
    so the other versions stay listed.
    """
    out = []
    version = latest_version(folder)
    while version:
        try:
            record = read_version(folder, version)
        except ValueError as exc:
            if damaged is None:
                raise
            damaged.append(exc)
            version = max((v for v in versions(folder) if v < version), default=0)
            continue
        out.append(record)
        version = int(record.get("previous") or 0)
    return out[::-1]


# ------------------------------------------------------------------------------------------------ the lock
def read_lock(folder: str) -> dict[str, Any] | None:
    """Who holds the lock (the record of :func:`storage.lock.owner_record`, with ``owner``: who, as given to
    :func:`lock`), or None; ``{}`` for a lock file that cannot be read."""
    try:
        with open(os.path.join(folder, LOCK), "rb") as f:
            holder = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return {}
    return {**holder, "owner": holder.get("command", holder.get("owner", ""))} if holder else holder


def is_stale(holder: Mapping[str, Any]) -> bool:
    """The lock's owner is gone: a process of this host that no longer runs (or a PID reused since)."""
    return writer_locks.is_stale(holder)


@contextlib.contextmanager
def lock(folder: str, owner: str = "") -> Iterator[dict[str, Any]]:
    """Hold the folder's exclusive lock for the ``with`` block; yields what was recorded in it.

    The lock is :mod:`storage.lock`'s, the one store writers take too (same record, same staleness rule, same
    takeover of a dead owner's lock); unlike a store's it is not re-entrant: a second curate run in the same
    process is refused like one in another process.

    Raises
    ------
    CurationLocked
        Another live process holds it; the message names it and says how to clear a lock left by a dead
        process of another machine.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK)

    def refuse(holder, alive):
        if not holder:
            return CurationLocked(f"{folder}: could not take the lock after 3 tries (other runs keep taking it)")
        return CurationLocked(
            f"{folder} is locked by another curate run ({holder.get('command') or holder.get('owner') or 'unnamed'}, "
            f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}): two runs may not "
            f"curate the same set at once. Wait for it to finish; if that process is gone for good, delete {path}."
        )

    file, me = writer_locks.acquire(path, owner, refuse)
    try:
        yield {**me, "owner": owner}
    finally:
        writer_locks.release(file, me)
