"""How many threads a job may use where it runs: the Dask worker's share, else no limit.

Torch and BLAS inside a job should use no more threads than the worker running it has, or two one-thread
workers on two cores oversubscribe them. The question is put to Dask only when Dask is already loaded (a job on
a Dask worker): the pipeline itself never imports it.
"""

from __future__ import annotations

import sys


def worker_threads() -> int | None:
    """Threads of the Dask worker running us (None outside Dask)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker().state.nthreads
    except ValueError:  # loaded, but this is not a worker
        return None
