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

from ..threads import available, blas_threads


def one_blas_thread():
    """Context in which BLAS runs on one thread: the cores are used by running several GEMM + reduction
    tasks at once on Python threads (:func:`_map`).

    OpenBLAS's threads and numba's OpenMP threads both spin-wait after a parallel region; alternating the
    two (a GEMM, then a reduction, per block) makes them fight for the cores, and on a busy machine a
    run took twice as long as with single-threaded GEMMs.
    """
    return blas_threads(1)


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}  # by worker count (worth.select(threads=) may cap it)
_LOCAL = threading.local()


def _forget_executor() -> None:
    _EXECUTORS.clear()


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
    return available()


def _map(fn, items: list) -> None:
    """Run ``fn`` on every item, on the cores (Python threads: the kernels release the GIL, BLAS runs on one).

    Threads rather than numba's parallel regions: a task is a GEMM followed by its reduction, and OpenBLAS's
    and OpenMP's spinning worker pools fight over the cores when they alternate.
    """
    workers = _threads()
    if len(items) <= 1 or workers == 1:
        for it in items:
            fn(it)
        return
    if workers not in _EXECUTORS:
        _EXECUTORS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worth-fl")
    for _ in _EXECUTORS[workers].map(fn, items):  # re-raises a task's exception here
        pass
