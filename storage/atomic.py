"""Whole-or-nothing files on a local filesystem: what manifests, curated versions and their pointers are made of.

A reader must never see half a file, and a second writer must never replace the first one's. Data goes to a
hidden temporary file in the same folder (flushed and synced), then reaches its name in one step: ``link(2)``
for a name that must not exist yet (it fails with ``EEXIST`` like ``open(O_CREAT | O_EXCL)``, but publishes
the complete content at once), ``rename(2)`` for a pointer that is replaced. The folder is synced after, so the
new name survives a crash. A killed writer can leave a hidden ``.NAME.*.tmp`` behind; readers ignore it.
"""

from __future__ import annotations

import os
import uuid


def fsync_dir(folder: str) -> None:
    """Make the names in ``folder`` durable (new links and renames); ``""`` is the working directory, as in
    ``os.path.split("pool.zarr.lock")`` (a relative ``--store`` path)."""
    fd = os.open(folder or os.curdir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(folder: str, name: str, data: bytes) -> str:
    """``data`` in a new hidden file beside ``folder/name``, synced; returns its path."""
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def create_exclusive(path: str, data: bytes) -> None:
    """Publish ``data`` at ``path`` whole, or raise ``FileExistsError`` when the name is taken."""
    folder, name = os.path.split(path)
    tmp = write_temp(folder, name, data)
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(folder)


def replace(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a pointer such as ``LATEST``)."""
    folder, name = os.path.split(path)
    os.replace(write_temp(folder, name, data), path)
    fsync_dir(folder)
