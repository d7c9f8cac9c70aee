"""One writing run per store: a lock file beside the store, with its owner's PID, host and start time.

Parallel writers *inside* one run are safe by construction (each Dask worker writes only its own chunks); two
*runs* on one store are not — both plan, both reserve rows, and the one that loses dies with an internal error.
:func:`writer_lock` makes the second run fail at once with one line that names the owner.

The lock is the file ``<store>.lock`` (``pool.zarr`` → ``pool.zarr.lock``), beside the store rather than in it:
a file inside the Zarr hierarchy would be reported by Zarr as an unknown member, and a new store's directory must
be empty for Zarr to create it. A lock whose owner is gone — same host, PID dead or reused by another process —
is stale: it is taken over with a warning. A lock from another host cannot be checked from here; its message says
how to remove it. Local locks are created atomically (``O_EXCL``); on object stores (``s3://``) the lock is
written and read back, which stops two runs that do not start within the same instant.
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
from collections.abc import Iterator, Mapping
from typing import Any

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


def _record(command: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
            "token": uuid.uuid4().hex}


class _LocalFile:
    def __init__(self, path: str):
        self.path = path[len("file://"):] if path.startswith("file://") else path

    def create(self, data: bytes) -> bool:
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def replace(self, data: bytes) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _RemoteFile:
    def __init__(self, path: str, storage_options: Mapping[str, Any] | None):
        from fsspec.core import url_to_fs

        self.fs, self.path = url_to_fs(path, **dict(storage_options or {}))

    def create(self, data: bytes) -> bool:
        if self.fs.exists(self.path):
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def replace(self, data: bytes) -> None:
        self.fs.pipe_file(self.path, data)

    def read(self) -> bytes | None:
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path)


def _describe(owner: Mapping[str, Any]) -> str:
    return (f"process {owner.get('pid')} on {owner.get('host')} (`{owner.get('command')}`, since "
            f"{owner.get('started')})")


def _acquire(ref: StoreRef, command: str):
    url, path = ref.url, lock_path(ref)
    file = _LocalFile(path) if ref.is_local else _RemoteFile(path, ref.storage_options)
    mine = _record(command)
    data = json.dumps(mine).encode()
    try:
        created = file.create(data)
        if not created:
            raw = file.read()
            try:
                owner = json.loads(raw or b"{}")
            except ValueError:
                owner = {}
            alive = _owner_alive(owner) if owner else False
            if alive is None:
                raise StoreLockedError(
                    f"store {url!r} is locked by {_describe(owner)}, another host: wait for that run to end; if it "
                    f"is gone, delete the lock file {path}"
                )
            if alive:
                raise StoreLockedError(
                    f"store {url!r} is being written by {_describe(owner)}: wait for it to finish or stop it "
                    f"(kill {owner.get('pid')}); one run writes a store at a time"
                )
            warnings.warn(f"store {url!r}: taking over the stale lock of {_describe(owner) if owner else 'nobody'} "
                          "(that process is gone)", stacklevel=3)
            file.replace(data)
        if json.loads(file.read() or b"{}").get("token") != mine["token"]:
            raise StoreLockedError(f"store {url!r}: another run took the lock {path} at the same moment; retry")
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
    return file, mine["token"]


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
    file, token = _acquire(ref, command or " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:3]))
    _held[path] = 1
    try:
        yield path
    finally:
        _held.pop(path, None)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(file.read() or b"{}").get("token") == token:
                file.remove()
