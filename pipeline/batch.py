"""Many small jobs per task: how a list of jobs is cut into batches, and how one batch runs.

The fan-out of :mod:`flows.runtime` submits one task per *batch*, not per job: a Prefect task costs a fixed
overhead (its run record, state changes, result persisted, the scheduler's round trip), which dominated jobs of a
few milliseconds (a per-class selection over 1,000 classes of 20 rows). :func:`jobs_per_task` bounds the tasks
to :data:`TASKS_PER_SLOT` per worker slot, so orchestration costs at most that many task overheads per slot
whatever the number of jobs, while leaving the scheduler enough tasks to balance uneven jobs; maps of at most
that many jobs per slot stay one job per task, exactly as before.

Batching changes nothing in the results: :func:`run_batch` runs each job by itself, in order, and returns one
:class:`Outcome` per job — its value or its error — so a failed job does not take its batch-mates down and the
flow reassembles results and records exactly as the unbatched map would. Only a *transient* I/O error (a
timeout, a reset connection) leaves the batch, so that the task's retry policy tries the batch again.

Jobs of one batch share what is costly to open (:func:`shared`): a store opened once, chunks decoded once.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Tasks per worker slot (worker thread) at most; more jobs than that are batched.
TASKS_PER_SLOT = 8
#: Environment override of the batch size (jobs per task), e.g. 1 for one task per job (bench/flow_overhead.py).
JOBS_PER_TASK_ENV = "WORTH_JOBS_PER_TASK"

_NOT_TRANSIENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_PERMANENT_ERRNO = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EACCES, errno.EPERM}


def is_transient(exc: BaseException) -> bool:
    """An I/O error that another try may not meet (a timeout, a reset connection, a flaky object store).

    A full or read-only filesystem, a permission error and a missing file are permanent: retrying only delays
    the message that says what to fix; a ``ValueError`` is bad input.
    """
    if isinstance(exc, _NOT_TRANSIENT):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNO
    return isinstance(exc, (TimeoutError, ConnectionError))


@dataclass
class Outcome:
    """What one job gave: its value, or the error it raised (kept, raised again by :meth:`result`)."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("worth_batch_shared", default=None)


def shared(key: Any, make: Callable[[], Any]) -> Any:
    """``make()`` once per batch for ``key`` (outside a batch: every call). For read-only things the jobs of one
    batch all need — an opened store, a decoded chunk — never for anything a job changes."""
    cache = _SHARED.get()
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


@contextlib.contextmanager
def _batch_scope() -> Iterator[dict]:
    token = _SHARED.set({})
    try:
        yield _SHARED.get()
    finally:
        _SHARED.reset(token)


def run_batch(fn: Callable[[Any], Any], jobs: Sequence[Any],
              prepare: Callable[[Sequence[Any]], None] | None = None) -> list[Outcome]:
    """Run ``fn(job)`` for every job, in order; one :class:`Outcome` each. A transient I/O error is raised (the
    task retries the batch); any other error is kept in its job's outcome and the next job runs.

    ``prepare(jobs)`` runs first, inside the batch's scope: it may fill :func:`shared` with what the whole batch
    reads (the select jobs' rows, read in one pass). It only saves work — a non-transient error there is
    dropped, and each job then meets (and reports) it by itself."""
    out = []
    with _batch_scope():
        if prepare is not None:
            try:
                prepare(jobs)
            except Exception as exc:
                if is_transient(exc):
                    raise
        for job in jobs:
            try:
                out.append(Outcome(fn(job)))
            except Exception as exc:
                if is_transient(exc):
                    raise
                out.append(Outcome(error=exc))
    return out


def batched(fn: Callable[[Any], Any], prepare: Callable[[Sequence[Any]], None] | None = None
            ) -> Callable[..., list[Outcome]]:
    """``fn`` over a batch of jobs: ``batched(fn)(jobs, label)`` is :func:`run_batch` (``label`` names the
    batch's task run; ``prepare``: see there). A module-level function stays picklable by reference inside it."""

    def run(jobs: list, label: str = "batch") -> list[Outcome]:
        return run_batch(fn, jobs, prepare)

    run.__name__ = f"{fn.__name__}_batch"
    run.__qualname__ = run.__name__
    run.__doc__ = f"A batch of :func:`{fn.__module__}.{fn.__name__}` jobs (one Outcome each)."
    return run


def jobs_per_task(n_jobs: int, slots: int, override: int | None = None) -> int:
    """Jobs per task: ``override`` (or ``$WORTH_JOBS_PER_TASK``) if given, else enough that the map makes at most
    :data:`TASKS_PER_SLOT` tasks per slot (1 for small maps)."""
    if override is None and os.environ.get(JOBS_PER_TASK_ENV):
        override = int(os.environ[JOBS_PER_TASK_ENV])
    if override is not None:
        if override < 1:
            raise ValueError(f"jobs per task must be at least 1, not {override} (${JOBS_PER_TASK_ENV})")
        return override
    return max(1, math.ceil(n_jobs / (max(1, slots) * TASKS_PER_SLOT)))


def split(n_jobs: int, size: int) -> list[list[int]]:
    """Job indices cut into consecutive batches of ``size`` (the last may be shorter)."""
    return [list(range(i, min(i + size, n_jobs))) for i in range(0, n_jobs, size)]
