"""The select task's read (issue 19): float32 rows normalised in place for states that keep float32, the stored
dtype otherwise; picks equal the library on the store's rows (no Prefect: the task function itself)."""

from __future__ import annotations

import numpy as np
import pytest

import worth
from storage.store import EmbeddingStore
from pipeline.select import SelectJob, run_select_job
from pipeline.select import _job_rows as _job_rows_of


def _rows(job, st, xp):
    return _job_rows_of(job, st)


@pytest.mark.parametrize("objective,params,dtype", [("facility-location", {"neighbors": 10}, np.float32),
                                                    ("facility-location", {}, np.float32),
                                                    ("vendi", {}, None)])
def test_job_reads_the_dtype_its_state_keeps_and_picks_as_the_library(digits_store, objective, params, dtype):
    st = EmbeddingStore.open(digits_store)
    pos = np.arange(0, st.n, 2, dtype=np.int64)
    job = SelectJob(store=digits_store, positions=pos, k=12, objective=objective, params=params,
                    optimizer="lazy" if objective == "facility-location" else "greedy")
    X = _rows(job, st, np)
    assert X.dtype == np.dtype(dtype or st.dtype)
    if dtype is np.float32:
        np.testing.assert_allclose(np.linalg.norm(X.astype(np.float64), axis=1), 1.0, atol=1e-6)
    ref = worth.select(st.rows(pos).astype(np.float64), 12, objective, job.optimizer, **params)
    got = run_select_job(job)
    assert got["rows"] == pos[np.asarray(ref.indices)].tolist()
    np.testing.assert_allclose(got["values"], np.asarray(ref.values), rtol=1e-5)


@pytest.mark.parametrize("limit_chunks", [1, 2])
def test_a_batch_reads_its_rows_once_and_each_job_gets_its_own(digits_store, monkeypatch, limit_chunks):
    """Per-class jobs each read rows from every chunk: with the LRU holding fewer chunks than the store has, job
    after job missed on every chunk (at 1.28 M rows each job decoded the whole store). hold_batch_rows reads the
    batch's union once: every chunk decoded once, and each job's picks as when it reads alone."""
    from pipeline import select as ps
    from pipeline.batch import run_batch

    st = EmbeddingStore.open(digits_store)
    assert st.n_chunks >= 3
    labels = st.labels()
    jobs = [SelectJob(store=digits_store, positions=np.flatnonzero(labels == c).astype(np.int64), k=4,
                      objective="vendi", params={}, optimizer="greedy", label=f"class-{c}") for c in range(6)]
    per_chunk = st.chunk_rows * st.dim * np.dtype(st.dtype).itemsize
    monkeypatch.setattr(ps._Chunks, "LIMIT_BYTES", limit_chunks * per_chunk)
    reads = []
    real = EmbeddingStore.rows

    def counted(self, idx, *a, **kw):
        reads.append(int(np.asarray(idx).ravel()[0]) // st.chunk_rows)
        return real(self, idx, *a, **kw)

    monkeypatch.setattr(EmbeddingStore, "rows", counted)
    alone = [run_batch(ps.run_select_job, [j])[0].result() for j in jobs]
    reads.clear()
    run_batch(ps.run_select_job, jobs)  # the batch without reading ahead: the LRU thrashes
    assert len(reads) > 2 * st.n_chunks
    reads.clear()
    held = [o.result() for o in run_batch(ps.run_select_job, jobs, ps.hold_batch_rows)]
    assert sorted(reads) == list(range(st.n_chunks))  # each chunk decoded once for the whole batch
    assert [h["rows"] for h in held] == [a["rows"] for a in alone]
    assert [h["values"] for h in held] == [a["values"] for a in alone]


def test_a_failing_prepare_leaves_each_job_to_report_its_own_error(digits_store):
    from pipeline.batch import run_batch

    def prepare(jobs):
        raise ValueError("cannot read ahead")

    outs = run_batch(lambda j: j * 2, [1, 2], prepare)
    assert [o.result() for o in outs] == [2, 4]

    def slow(jobs):
        raise TimeoutError("slow store")

    with pytest.raises(TimeoutError):  # transient: the task's retries try the batch again
        run_batch(lambda j: j, [1], slow)


@pytest.mark.parametrize("objective,optimizer,params,ground", [("vendi", "greedy", {}, "picks"),
                                                               ("logdet", "lazy", {"sigma2": 0.5}, "picks"),
                                                               ("facility-location", "lazy", {}, "pool")])
def test_the_merge_job_reads_only_the_parts_picks_where_the_objective_allows(digits_store, monkeypatch, objective,
                                                                             optimizer, params, ground):
    """GreeDi's final round on a spectral objective reads the rows the parts picked, not the pool (at 1.28 M rows
    the pool's float64 copy is 5.2 GB and the round's O(n) work per step ran over every row); its picks and
    values are distributed_greedy's on the whole pool. Facility location still reads the pool."""
    from pipeline import select as ps

    st = EmbeddingStore.open(digits_store)
    pos = np.arange(st.n, dtype=np.int64)
    X = st.rows(pos).astype(np.float64)
    ref = worth.distributed_greedy(X, 10, parts=3, objective=objective, optimizer=optimizer, seed=2, **params)
    job = dict(store=digits_store, k=10, objective=objective, params=params, optimizer=optimizer, seed=2)
    parts = [run_select_job(SelectJob(positions=pos[rows], **job))
             for rows in worth.distributed.partition(st.n, 3, seed=2)]
    read = []
    real = ps._rows
    monkeypatch.setattr(ps, "_rows", lambda j, s, p: read.append(np.asarray(p).copy()) or real(j, s, p))
    got = ps.run_merge_job(ps.MergeJob(SelectJob(positions=pos, label="m", **job), parts))
    union = np.unique(np.concatenate([p["rows"] for p in parts]))
    np.testing.assert_array_equal(read[0], union if ground == "picks" else pos)
    assert got["info"]["ground"] == ground and got["info"]["round"] == ref.info["round"]
    assert got["rows"] == np.asarray(ref.indices).tolist()
    np.testing.assert_allclose(got["values"], np.asarray(ref.values), rtol=1e-10)
