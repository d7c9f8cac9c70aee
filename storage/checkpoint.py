"""Finished work of a long job, kept on disk as it arrives, so that a killed or failed run resumes from it.

An appraisal study on a real pool spends most of an hour on work that is a pure function of the pool: greedy
paths, mixtures completed by the minimiser, scores of subsets. Held only in the flow's memory, all of it was
lost to a kill, a failed run or a change of the training settings. A :class:`Checkpoint` is a folder of small
JSON files, one per finished job, each a map ``key → value`` written whole (:mod:`storage.atomic`: a reader
never sees half a file, a killed writer leaves only a hidden temporary file behind); :meth:`Checkpoint.load`
merges them. Keys name the work itself (a path's key, a subset's rows), never the job that did it, so a rerun
whose jobs are cut differently still finds every piece.

A file that cannot be read (truncated by a full disk, edited by hand) is skipped with a warning naming it: its
work is simply done again and the file replaced by the next save of that work.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from .atomic import replace


class Checkpoint:
    """A folder of finished work: ``save`` a batch of ``key → value`` (JSON values) as one file, ``load`` all."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self) -> dict[str, Any]:
        """Every saved ``key → value`` (a later file wins on a repeated key); ``{}`` for a missing folder."""
        out: dict[str, Any] = {}
        if not self.folder.is_dir():
            return out
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                got = json.loads(path.read_text())
                if not isinstance(got, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                warnings.warn(f"checkpoint file {path} is unreadable ({exc}); its work is done again "
                              f"(delete the file to silence this)", RuntimeWarning, stacklevel=2)
                continue
            out.update(got)
        return out

    def save(self, entries: dict[str, Any]) -> Path | None:
        """Write ``entries`` as one file, whole, named by its keys (saving the same work twice replaces the
        file); ``None`` and nothing written for no entries."""
        if not entries:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(entries, sort_keys=True).encode()
        name = hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()[:20] + ".json"
        path = self.folder / name
        replace(str(path), data)
        return path
