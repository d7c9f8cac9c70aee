"""The facility-location engine's thread pool: GEMM + reduction tasks on Python threads, BLAS on one thread.

OpenBLAS's threads and numba's OpenMP threads both spin-wait after a parallel region; alternating the two (a
GEMM, then a reduction, per block) makes them fight for the cores. So the engine runs BLAS on one thread and
several tasks at once on Python threads (the compiled kernels release the GIL).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_CONTROLLER = None


def one_blas_thread():
    """Context in which BLAS runs on one thread: the cores are used by running several GEMM + reduction
    tasks at once on Python threads (:func:`_map`).

    OpenBLAS's threads and numba's OpenMP threads both spin-wait after a parallel region; alternating the
    two (a GEMM, then a reduction, per block) makes them fight for the cores, and on a busy machine a
    run took twice as long as with single-threaded GEMMs.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_EXECUTOR: ThreadPoolExecutor | None = None
_LOCAL = threading.local()


def _forget_executor() -> None:
    global _EXECUTOR
    _EXECUTOR = None


# A forked child inherits the pool object but not its threads (tasks would wait forever): it starts its own.
os.register_at_fork(after_in_child=_forget_executor)


def _scratch(shape: tuple[int, int], dtype) -> np.ndarray:
    """A per-thread GEMM output buffer, reused: a fresh 10–50 MB array per block costs its page faults."""
    buf = getattr(_LOCAL, "buf", None)
    size = shape[0] * shape[1]
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = _LOCAL.buf = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _map(fn, items: list) -> None:
    """Run ``fn`` on every item, on the cores (Python threads: the kernels release the GIL, BLAS runs on one).

    Threads rather than numba's parallel regions: a task is a GEMM followed by its reduction, and OpenBLAS's
    and OpenMP's spinning worker pools fight over the cores when they alternate.
    """
    global _EXECUTOR
    if len(items) <= 1 or _threads() == 1:
        for it in items:
            fn(it)
        return
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="worth-fl")
    for _ in _EXECUTOR.map(fn, items):  # re-raises a task's exception here
        pass
