"""One factory for the project's Prefect tasks: retries where I/O can fail, and a cache that survives dead workers.

Every task of ``tasks/`` is a thin wrapper over a library function, made with :func:`worth_task` (as flint does
with ``task(fn)`` in ``flint/prefect/common``). Two decisions live here and nowhere else.

**Retries only on transient I/O.** An object store timing out or a connection reset may not happen again, so
such a task is tried up to three times. A ``ValueError`` (bad input: an unreadable image, a mismatched store),
a missing file or a permission error cannot be fixed by trying again, so it fails at once — and so does a
read-only filesystem (``EROFS``), which is an ``OSError`` but not a passing one.

**The cache key is the task run, with results persisted.** A Dask worker that dies takes the results held in its
memory with it, and Dask recomputes those keys — which makes Prefect run *completed* tasks again
(prefect#15442, reproduced here; see ``docs/stack.md``). Keyed on the task-run id, a recomputed task finds its
own persisted result and returns it without running the function again; a new flow run (new task-run ids)
computes afresh, so the cache never serves one run's result to another. Tasks whose output is a file of their
own (a manifest, a chunk) also skip when that output exists, which covers the kill -9 of the whole flow.
Results are persisted to Prefect's result storage (``PREFECT_LOCAL_STORAGE_PATH`` under ``PREFECT_HOME`` by
default — shared by the processes of one machine; set ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` to shared
storage when workers run on several machines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from pipeline.batch import is_transient
from pipeline.threads import worker_threads  # noqa: F401  (re-exported for the task modules)

def is_transient_io_error(task, task_run, state) -> bool:
    """Retry condition: the task failed with an I/O error that another try may not meet
    (:func:`pipeline.batch.is_transient`: a full or read-only filesystem, a permission error and a missing file
    are permanent, so retrying only delays the message that says what to fix)."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


class TaskRunCache(CachePolicy):
    """Cache key = the task-run id: a task that Dask recomputes after a worker died returns its persisted result."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        return f"worth-task-run-{task_ctx.task_run.id}"


TASK_RUN_CACHE = TaskRunCache()


def worth_task(fn: Callable[..., Any], *, name: str, io: bool = True, cache: bool = True,
               task_run_name: str | None = None, retries: int = 2, retry_delay_seconds: float = 2) -> Task:
    """Wrap a library function as a project task.

    Parameters
    ----------
    fn : callable
        The library function (it stays importable and testable without Prefect).
    name : str
        The task's name in the Prefect UI.
    io : bool
        The task reads or writes storage: retry it on transient I/O errors (``retries`` times).
    cache : bool
        Key the cache on the task run and persist the result (the dead-worker rule above). Off for tasks whose
        result is large or not picklable, and for tasks that run in the flow's own process.
    task_run_name : str, optional
        Template of each run's name, e.g. ``"select-{job.name}"``.
    """
    options: dict[str, Any] = {"name": name, "task_run_name": task_run_name}
    if cache:
        options.update(cache_policy=TASK_RUN_CACHE, persist_result=True)
    else:
        options.update(cache_policy=NO_CACHE)
    if io:
        options.update(retries=retries, retry_delay_seconds=retry_delay_seconds,
                       retry_condition_fn=is_transient_io_error)
    return task(fn, **options)
