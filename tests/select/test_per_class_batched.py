"""The per-class selection of issue 18 at 200 classes through the select flow, batched: picks equal to
``worth.select`` on each class alone, the same manifest unbatched, and fewer tasks than classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from flows.select import SelectionSpec, SelectOptions, run_select
from pipeline.batch import JOBS_PER_TASK_ENV, jobs_per_task
from storage import manifest as mf

_PATH = Path(__file__).resolve().parents[2] / "bench" / "flow_overhead.py"
_spec = importlib.util.spec_from_file_location("bench_flow_overhead", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CLASSES, PER_CLASS, QUOTA = 200, 20, 13


@pytest.fixture(scope="module")
def class_store(tmp_path_factory):
    return bench.make_class_store(str(tmp_path_factory.mktemp("classes") / "classes.zarr"), CLASSES, PER_CLASS,
                                  chunk_rows=1024)


@pytest.mark.slow
def test_batched_per_class_equals_worth_select_per_class(class_store, dask_task_runner, monkeypatch):
    monkeypatch.delenv(JOBS_PER_TASK_ENV, raising=False)
    assert jobs_per_task(CLASSES, 2) > 1  # the session cluster's 2 slots: this map is batched
    spec = SelectionSpec(name="pc-batched", objective="vendi", regime="per-class", quotas=QUOTA)
    result = run_select(SelectOptions(store=class_store, selections=[spec]), task_runner=dask_task_runner)
    assert result["jobs"] == CLASSES
    man = mf.read_manifest(class_store, "pc-batched")
    assert bench.picks_by_class(man) == bench.per_class_reference(class_store, QUOTA)
    assert [j["label"] for j in man["timings"]["jobs"]] == [f"pc-batched-class-{c}" for c in range(CLASSES)]
    # the same selection inline, one job per batch: the same picks, gains and values
    monkeypatch.setenv(JOBS_PER_TASK_ENV, "1")
    inline = run_select(SelectOptions(store=class_store, selections=[spec.model_copy(update={"name": "pc-one"})]))
    one = mf.read_manifest(class_store, inline["manifests"][0]["name"])
    assert one["picks"] == man["picks"] and one["value"] == man["value"]


def test_batches_cover_every_job_once_in_order():
    from pipeline.batch import split

    for n, size in [(0, 1), (1, 1), (10, 3), (200, 13), (1000, 63)]:
        groups = split(n, size)
        assert [i for g in groups for i in g] == list(range(n))
        assert all(1 <= len(g) <= size for g in groups)


@pytest.mark.parametrize("n,slots,expect", [(10, 2, 1), (16, 2, 1), (17, 2, 2), (1000, 2, 63), (1000, 16, 8)])
def test_jobs_per_task_bounds_the_tasks_per_slot(n, slots, expect, monkeypatch):
    monkeypatch.delenv(JOBS_PER_TASK_ENV, raising=False)
    assert jobs_per_task(n, slots) == expect
    monkeypatch.setenv(JOBS_PER_TASK_ENV, "1")
    assert jobs_per_task(n, slots) == 1
    monkeypatch.setenv(JOBS_PER_TASK_ENV, "0")
    with pytest.raises(ValueError, match="at least 1"):
        jobs_per_task(n, slots)


def test_a_failed_job_is_an_outcome_and_the_batch_goes_on():
    from pipeline.batch import run_batch

    def job(x):
        if x == 2:
            raise ValueError("bad job 2")
        return x * 10

    outs = run_batch(job, [1, 2, 3])
    assert [o.ok for o in outs] == [True, False, True] and outs[2].result() == 30
    with pytest.raises(ValueError, match="bad job 2"):
        outs[1].result()
    with pytest.raises(TimeoutError):  # a transient error leaves the batch: the task's retries try it again
        run_batch(lambda x: (_ for _ in ()).throw(TimeoutError("slow store")), [1])
