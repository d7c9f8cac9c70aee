"""``threads=``: the same picks on any thread count; the caps apply inside the run only."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import worth
from tests.helpers import make_instance
from worth import threads as worth_threads


def _blas_threads() -> int:
    """Threads of NumPy's BLAS (the one the gains and updates call)."""
    return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"])


@pytest.mark.parametrize("name", ["vendi", "power", "facility-location"])
def test_thread_count_does_not_change_the_selection(name):
    X = make_instance("clustered", n=300, m=8, seed=1)
    ref = worth.select(X, 20, name)
    one = worth.select(X, 20, name, threads=1)
    np.testing.assert_array_equal(one.indices, ref.indices)
    np.testing.assert_allclose(one.values, ref.values, rtol=1e-12)


def test_caps_hold_inside_the_run_and_are_restored():
    seen = []

    def probe(step, k):
        seen.append((numba.get_num_threads(), _blas_threads(), worth_threads.available()))

    before = (numba.get_num_threads(), _blas_threads())
    worth.select(make_instance("gaussian", n=60, m=6), 3, "logdet", threads=1, progress=probe)
    assert set(seen) == {(1, 1, 1)}
    assert (numba.get_num_threads(), _blas_threads()) == before
    seen.clear()
    worth.select(make_instance("gaussian", n=60, m=6), 3, "logdet", progress=probe)
    assert {s[1] for s in seen} == {1}  # default: BLAS on one thread during the picks
    assert {s[0] for s in seen} == {before[0]}  # numba's kernels keep their threads


@pytest.mark.parametrize("threads,match", [(0, "threads=0 must be a positive integer"),
                                           (1.5, "threads=1.5 must be an integer")])
def test_bad_threads_refused(threads, match):
    with pytest.raises(ValueError, match=match):
        worth.select(make_instance("gaussian", n=20, m=3), 3, "logdet", threads=threads)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(200, 180, 190), (97, 300, 64), (33, 8, 5)])
def test_matmul_rows_is_matmul(threads, shape):
    """The row-split product (the rotation of the eigenvectors) writes ``a @ b`` into ``out``, any split."""
    rng = np.random.default_rng(1)
    rows, inner, cols = shape
    a, b = rng.normal(size=(rows, inner)), rng.normal(size=(cols, inner)).T  # b transposed, as the update passes it
    out = np.full((rows, cols), np.nan)
    with worth_threads.blas_threads(1):
        got = worth_threads.matmul_rows(a, b, out, threads=threads)
    assert got is out
    np.testing.assert_allclose(out, a @ b, rtol=0, atol=1e-12 * np.abs(a).max() * np.abs(b).max() * inner)


@pytest.mark.parametrize("edges", [[0, 10], [0, 3, 7, 10], [0, 0], list(range(0, 65, 8))])
def test_run_blocks_runs_every_block_once(edges):
    """Every block of the eigen-update's threaded phases runs once, whatever the count; an error comes back."""
    seen = []
    worth_threads.run_blocks(lambda a, b: seen.append((a, b)), edges)
    assert sorted(seen) == list(zip(edges[:-1], edges[1:]))

    def fail(a, b):
        if a > 0:
            raise RuntimeError("block failed")

    if len(edges) > 2:
        with pytest.raises(RuntimeError, match="block failed"):
            worth_threads.run_blocks(fail, edges)
