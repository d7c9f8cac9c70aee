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
