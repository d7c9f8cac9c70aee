"""How many threads a selection runs on, chosen per phase: BLAS for the setup, one BLAS thread per pick.

A greedy step is a few small GEMMs (a batch of candidates' projections, ``B × m × r`` with ``B ≤ 1,024``)
between compiled kernels that already use every core (numba's parallel gain loops, facility location's
task pool). OpenBLAS's threads and numba's both spin-wait after a parallel region, so alternating them makes
them fight over the cores; on a shared machine OpenBLAS's threads also oversubscribe it. Measured (issue 11,
Vendi n = 100,000, m = 128, k = 2,000 on 2 cores): 23.9 s with BLAS on every core against 10.0 s with one BLAS
thread on a quiet machine, 39.7 s against 17.8 s beside another job. So the per-pick phase (gains and
updates, :func:`pick_phase`) runs BLAS on one thread, and the setup (the states, the conditioning set's
product and ``eigh``) keeps BLAS's own count. ``bench/gains.py`` measures both settings. The one large
product of a pick, the rotation of the eigenvectors, still uses every core: the eigen-update runs its phases
and its rotation in blocks on threads of our own (:func:`run_blocks`; :func:`matmul_rows` for a plain
product), each calling compiled kernels without the GIL or single-threaded BLAS (``bench/pick_update.py``). The refresh's ``eigh``
stays on one thread: on a loaded 2-core machine two BLAS threads made it ten times slower, not faster.

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


_POOL = None
_POOL_SIZE = 0
_SPLIT_FLOPS = 2 * 160 ** 3
"""Below this a product runs on the calling thread: handing half to a worker costs ≈ 20–50 µs."""


def _pool(workers: int):
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < workers:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worth-rows")
        _POOL_SIZE = workers
    return _POOL


def run_blocks(fn, edges) -> None:
    """``fn(edges[i], edges[i + 1])`` for every block, the first on the calling thread and the others on the
    pool's threads, returning when all are done (the first error re-raised).

    For compiled kernels that release the GIL (numba's ``nogil``) and single-threaded BLAS calls between
    them: the rank-one eigen-update (:mod:`worth.spectral.eigupdate`) runs its O(K²) phases and its rotation
    on these threads rather than numba's OpenMP pool, whose workers spin after each region — beside BLAS, and
    on a shared machine beside other processes, a spinning worker holding a core the next phase needs made
    the update slower on two threads than on one (see ``bench/pick_update.py``). Ours sleep between blocks.
    """
    n = len(edges) - 1
    if n <= 1:
        if n == 1:
            fn(edges[0], edges[1])
        return
    pool = _pool(n - 1)
    futures = [pool.submit(fn, edges[i], edges[i + 1]) for i in range(1, n)]
    try:
        fn(edges[0], edges[1])
    finally:
        for f in futures:
            f.result()


def matmul_rows(a, b, out, threads: int | None = None):
    """``out[...] = a @ b`` with the rows of ``a`` split over ``threads`` threads (default :func:`available`).

    The per-pick rotation of the eigenvectors (:mod:`worth.spectral.eigupdate`) is one m×K×K product between
    numba's kernels. In :func:`pick_phase` BLAS runs on one thread; rather than waking BLAS's own pool (whose
    threads spin after the call, beside numba's), each block of rows is one single-threaded BLAS call on a
    thread of our own (NumPy releases the GIL in ``matmul``), and those threads sleep between picks. Every
    entry is the same dot product whichever block holds its row, so the result does not depend on the count.
    """
    t = available() if threads is None else max(1, int(threads))
    rows = a.shape[0]
    t = min(t, max(1, rows // 32))
    if t <= 1 or 2.0 * a.shape[0] * a.shape[1] * b.shape[1] < _SPLIT_FLOPS:
        import numpy as np

        return np.matmul(a, b, out=out)
    import numpy as np

    edges = [rows * i // t for i in range(t + 1)]
    futures = [_pool(t - 1).submit(np.matmul, a[edges[i]:edges[i + 1]], b, out=out[edges[i]:edges[i + 1]])
               for i in range(1, t)]
    np.matmul(a[:edges[1]], b, out=out[:edges[1]])
    for f in futures:
        f.result()
    return out
