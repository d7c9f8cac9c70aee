"""One lock mechanism for every writer: a lock file naming its owner's PID, host and start time.

Two things are locked with it:

* **a store** (:func:`writer_lock`): parallel writers *inside* one run are safe by construction (each Dask worker
  writes only its own chunks); two *runs* on one store are not — both plan, both reserve rows, and the one that
  loses dies with an internal error. The second run fails at once with one line that names the owner.
  The lock is the file ``<store>.lock`` (``pool.zarr`` → ``pool.zarr.lock``, :meth:`StoreRef.beside`), beside
  the store rather than in it: a file inside the Zarr hierarchy would be reported by Zarr as an unknown member,
  and a new store's directory must be empty for Zarr to create it. Re-entrant within one process.
* **a curated folder** (:func:`storage.curated.lock`, the file ``LOCK`` in it): one curate run at a time; not
  re-entrant (a second night in the same process is a second run).

The record (JSON) is the same for both: ``pid``, ``host``, ``proc_start`` (the kernel's start time of the
process, which tells a PID from its reuse), ``started`` (ISO 8601 UTC), ``command`` (who: a command line, a
flow run) and ``token`` (this holder's, so a release never removes another's lock).

A lock whose owner is gone — same host, PID dead or reused by another process — is stale: it is taken over
(moved aside and checked to be the stale one, so two newcomers cannot both take it). A lock from another host
cannot be checked from here; the refusal says how to remove it. Local locks appear whole or not at all
(:func:`storage.atomic.create_exclusive`: a reader never sees an empty lock file and takes it for stale); on
object stores (``s3://``) the lock is written and read back, which stops two runs that do not start within the
same instant.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from storage import atomic
from storage.ref import StoreRef

_held: dict[str, int] = {}  # lock path → depth, for this process (re-entrant: the CLI and its flow share one)


class StoreLockedError(RuntimeError):
    """Another live process is writing the store."""


def lock_path(url: StoreRef | str) -> str:
    """Where the lock of store ``url`` lives: the store's path or URL plus ``.lock``."""
    return StoreRef.of(url).beside(".lock").url


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), which tells a PID from its reuse by a later process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(owner: Mapping[str, Any]) -> bool | None:
    """True/False for an owner on this host; None when it ran on another host (liveness unknown from here)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    started = owner.get("proc_start")
    return started is None or _proc_start(pid) in (None, started)


def owner_record(command: str) -> dict[str, Any]:
    """What a lock file holds for this process: PID, host, kernel start time, ISO start, ``command``, a token."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
            "token": uuid.uuid4().hex}


def is_stale(owner: Mapping[str, Any]) -> bool:
    """The lock's owner is gone: a process of this host that no longer runs (or whose PID was reused since).
    A lock of another host is never stale from here (we cannot tell), nor an unreadable one being written."""
    return _owner_alive(owner) is False


class _LocalFile:
    def __init__(self, path: str):
        self.path = path

    def create(self, data: bytes) -> bool:
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        try:
            atomic.create_exclusive(self.path, data)
        except FileExistsError:
            return False
        return True

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def break_stale(self, owner: Mapping[str, Any]) -> None:
        """Move a stale lock aside; if what was moved is not that lock (another run took over first), put it back."""
        folder, name = os.path.split(os.path.abspath(self.path))
        aside = os.path.join(folder, f".{name}.stale.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        with open(aside, "rb") as f:
            moved = _parse(f.read())
        if moved.get("token") != owner.get("token"):
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _RemoteFile:
    def __init__(self, ref: StoreRef):
        self.fs, self.path = ref.filesystem()

    def create(self, data: bytes) -> bool:
        if self.fs.exists(self.path):
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def read(self) -> bytes | None:
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None

    def break_stale(self, owner: Mapping[str, Any]) -> None:
        self.remove()  # object stores have no rename-aside; the read-back after the create settles a race

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path)


def _parse(raw: bytes | None) -> dict[str, Any]:
    try:
        out = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _file(where: StoreRef):
    return _LocalFile(where.path) if where.is_local else _RemoteFile(where)


def acquire(where: StoreRef | str, command: str, refuse: Callable[[Mapping[str, Any], bool | None], Exception],
            *, on_stale: Callable[[Mapping[str, Any]], None] | None = None, tries: int = 3):
    """Create the lock file ``where`` for this process; return ``(file, record)`` for :func:`release`.

    ``refuse(owner, alive)`` builds the error raised when a live owner (``alive`` True) or one of another host
    (``alive`` None) holds it; ``on_stale(owner)`` is told before a stale lock is taken over. After ``tries``
    takeovers lost to other newcomers, or when the lock read back is not ours, ``refuse({}, True)`` is raised.
    """
    file = _file(StoreRef.of(where))
    mine = owner_record(command)
    data = json.dumps(mine).encode()
    for _ in range(tries):
        if file.create(data):
            break
        raw = file.read()
        if raw is None:
            continue  # released between our create and our read
        owner = _parse(raw)
        alive = _owner_alive(owner) if owner else False
        if alive is not False:
            raise refuse(owner, alive)
        if on_stale is not None:
            on_stale(owner)
        file.break_stale(owner)
    else:
        raise refuse({}, True)
    if _parse(file.read()).get("token") != mine["token"]:
        raise refuse({}, True)
    return file, mine


def release(file, record: Mapping[str, Any]) -> None:
    """Remove the lock file if it is still ``record``'s (a lock taken over meanwhile is left to its new owner)."""
    with contextlib.suppress(OSError, ValueError):
        if _parse(file.read()).get("token") == record["token"]:
            file.remove()


def _describe(owner: Mapping[str, Any]) -> str:
    return (f"process {owner.get('pid')} on {owner.get('host')} (`{owner.get('command')}`, since "
            f"{owner.get('started')})")


def _acquire_store(ref: StoreRef, command: str):
    url, path = ref.url, lock_path(ref)

    def refuse(owner, alive):
        if not owner:
            return StoreLockedError(f"store {url!r}: another run took the lock {path} at the same moment; retry")
        if alive is None:
            return StoreLockedError(f"store {url!r} is locked by {_describe(owner)}, another host: wait for that "
                                    f"run to end; if it is gone, delete the lock file {path}")
        return StoreLockedError(f"store {url!r} is being written by {_describe(owner)}: wait for it to finish or "
                                f"stop it (kill {owner.get('pid')}); one run writes a store at a time")

    def on_stale(owner):
        warnings.warn(f"store {url!r}: taking over the stale lock of {_describe(owner) if owner else 'nobody'} "
                      "(that process is gone)", stacklevel=5)

    try:
        return acquire(ref.beside(".lock"), command, refuse, on_stale=on_stale)
    except OSError as exc:
        msg = (f"cannot write the store {url!r}: {exc.strerror or exc} ({path}); choose a --store path on a "
               "writable filesystem with free space")
        raise (type(exc)(exc.errno, msg) if exc.errno else type(exc)(msg)) from exc
    except (StoreLockedError, ValueError):
        raise
    except Exception as exc:  # object-store clients raise their own types (botocore's NoCredentialsError ...)
        if ref.is_local:
            raise
        raise ConnectionError(
            f"cannot reach the store {url!r} ({type(exc).__name__}: {exc}); check the URL, the credentials "
            "(environment, or --storage-option key=... secret=...) and --storage-option endpoint_url=..."
        ) from exc


@contextlib.contextmanager
def writer_lock(url: StoreRef | str, storage_options: Mapping[str, Any] | None = None, *,
                command: str | None = None) -> Iterator[str]:
    """Hold the store's writer lock for the block; yields the lock's path.

    Re-entrant within one process (the ``worth embed`` command takes it before anything starts, and the flow it
    runs in the same process takes it again). Raises :class:`StoreLockedError` when a live process holds it, and
    ``OSError`` (with the path and the fix) when the lock cannot be written — the first write of a run, so a
    read-only or full filesystem is reported before any work.
    """
    ref = StoreRef.of(url, storage_options)
    path = lock_path(ref)
    if _held.get(path):
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    file, record = _acquire_store(ref, command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:3]))
    _held[path] = 1
    try:
        yield path
    finally:
        _held.pop(path, None)
        release(file, record)
