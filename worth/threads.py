"""How many threads a selection runs on, chosen per phase: BLAS for the setup, one BLAS thread per pick.

A greedy step is a few small GEMMs (a batch of candidates' projections, ``B × m × r`` with ``B ≤ 1,024``)
between compiled kernels that already use every core (numba's parallel gain loops, facility location's
task pool). OpenBLAS's threads and numba's both spin-wait after a parallel region, so alternating them makes
them fight over the cores; on a shared machine OpenBLAS's threads also oversubscribe it. Measured (issue 11,
Vendi n = 100,000, m = 128, k = 2,000 on 2 cores): 23.9 s with BLAS on every core against 10.0 s with one BLAS
thread on a quiet machine, 39.7 s against 17.8 s beside another job. So the per-pick phase (gains and
updates, :func:`pick_phase`) runs BLAS on one thread, and the setup (the states, the conditioning set's
product and ``eigh``) keeps BLAS's own count. ``bench/gains.py`` measures both settings.

``threads=t`` (:func:`worth.select`) caps the whole run at ``t`` threads — numba's kernels, BLAS and
facility location's task pool — for a process that shares its cores (a Dask worker's share).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator

_CONTROLLER = None
_CAP: contextvars.ContextVar[int | None] = contextvars.ContextVar("worth_threads", default=None)


def _controller():
    """One controller for the process (building one scans the loaded libraries: ≈30 ms). It limits the
    BLAS libraries loaded when it was built — NumPy's always, which every gain and update calls."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def available() -> int:
    """Threads this run may use: the ``threads=`` cap, else the cores this process may run on."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    cap = _CAP.get()
    return cores if cap is None else min(cap, cores)


def blas_threads(n: int):
    """Context in which BLAS runs on at most ``n`` threads."""
    return _controller().limit(limits=max(1, int(n)), user_api="blas")


@contextlib.contextmanager
def run_threads(threads: int | None) -> Iterator[None]:
    """Context for a whole selection: ``None`` leaves every pool as configured; ``t`` caps numba's kernels,
    BLAS and :func:`available` (facility location's task pool) at ``t`` threads."""
    if threads is None:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    token = _CAP.set(int(threads))
    numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))  # this thread only
    try:
        with blas_threads(threads):
            yield
    finally:
        numba.set_num_threads(previous)
        _CAP.reset(token)


def pick_phase():
    """Context for the greedy steps: BLAS on one thread (see the module docstring)."""
    return blas_threads(1)
