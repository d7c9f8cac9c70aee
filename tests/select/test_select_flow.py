"""The select flow on a real Prefect server and a real Dask LocalCluster (2 worker processes), over a digits store.

Equalities: ``fixed`` / ``balanced`` = ``worth.select`` with the same arguments; ``per-class`` = ``worth.select``
on each class alone; ``sharded`` = ``worth.distributed_greedy`` with the same seed — picks and values. A rerun
writes nothing. A Dask worker killed mid-map does not make finished jobs run again.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import worth
from flows.select import PROGRESS_KEY, SUMMARY_KEY, SelectionSpec, SelectOptions, run_select
from storage import manifest as mf
from storage.store import EmbeddingStore

SPECS = [
    SelectionSpec(name="fixed", objective="vendi", k=15),
    SelectionSpec(name="balanced", objective="logdet", k=23, regime="balanced"),
    SelectionSpec(name="per-class", objective="vendi", regime="per-class", quotas=4),
    SelectionSpec(name="sharded", objective="vendi", k=12, regime="sharded", parts=3, seed=7),
]


def _pool(url):
    st = EmbeddingStore.open(url)
    return st.rows(np.arange(st.n)), st.labels(), st.ids()


def check_equalities(url):
    """Every manifest of SPECS equals the library on the same rows (picks exactly, values to rounding)."""
    X, y, ids = _pool(url)
    refs = {
        "fixed": worth.select(X, 15, "vendi"),
        "balanced": worth.select(X, 23, "logdet", labels=y, quotas="balanced"),
        "sharded": worth.distributed_greedy(X, 12, parts=3, objective="vendi", seed=7),
    }
    for name, ref in refs.items():
        man = mf.read_manifest(url, name)
        assert man["picks"]["rows"] == np.asarray(ref.indices).tolist(), name
        assert man["picks"]["ids"] == ids[np.asarray(ref.indices)].tolist()
        np.testing.assert_allclose(man["picks"]["values"], ref.values, rtol=1e-12)
        np.testing.assert_allclose(man["picks"]["gains"], ref.gains, rtol=1e-12, atol=1e-12)
        assert man["value"] == pytest.approx(ref.value, rel=1e-12)
    partition = mf.read_manifest(url, "sharded")["partition"]
    assert partition["round"] == refs["sharded"].info["round"]
    assert partition["ground"] == "picks"  # Vendi's merge read only the parts' picks
    man = mf.read_manifest(url, "per-class")
    picks, classes = np.asarray(man["picks"]["rows"]), np.asarray(man["picks"]["classes"])
    total = 0.0
    for c in range(10):
        rows = np.flatnonzero(y == c)
        ref = worth.select(X[rows], 4, "vendi")
        assert picks[classes == c].tolist() == rows[np.asarray(ref.indices)].tolist()
        assert man["per_class"][str(c)]["value"] == pytest.approx(ref.value, rel=1e-12)
        total += ref.value
    assert man["value"] == pytest.approx(total, rel=1e-12)
    assert man["class_counts"] == {str(c): 4 for c in range(10)}


def test_flow_equals_the_library_and_a_rerun_writes_nothing(digits_store, dask_task_runner, read_artifacts,
                                                           manifest_bytes):
    options = SelectOptions(store=digits_store, selections=SPECS)
    first = run_select(options, task_runner=dask_task_runner)
    assert [(e["name"], e["version"], e["status"]) for e in first["manifests"]] == \
        [(s.name, 1, "written") for s in SPECS]
    assert first["jobs"] == 1 + 1 + 10 + 4
    check_equalities(digits_store)
    man = mf.read_manifest(digits_store, "per-class")
    assert man["flow_run_id"] == first["flow_run_id"] and man["mlflow_run_id"] is None
    processes = {j["process"] for name in ("per-class", "sharded")
                 for j in mf.read_manifest(digits_store, name)["timings"]["jobs"]}
    assert len(processes) == 2 and not any(p.endswith(f":{os.getpid()}") for p in processes)  # ran on the workers
    summary = read_artifacts(SUMMARY_KEY, first["flow_run_id"])[0].data
    assert all(f"| {s.name} | v1 | written |" in summary for s in SPECS)
    assert read_artifacts(PROGRESS_KEY, first["flow_run_id"])[0].data == pytest.approx(100.0)

    before, listed = manifest_bytes(digits_store), mf.list_manifests(digits_store)
    again = run_select(options, task_runner=dask_task_runner)
    assert [(e["status"], e["version"]) for e in again["manifests"]] == [("skipped", 1)] * len(SPECS)
    assert again["jobs"] == 0
    assert manifest_bytes(digits_store) == before and mf.list_manifests(digits_store) == listed
    assert "| fixed | v1 | skipped |" in read_artifacts(SUMMARY_KEY, again["flow_run_id"])[0].data

    changed = run_select(SelectOptions(store=digits_store, selections=[SPECS[0].model_copy(update={"k": 16})]),
                         task_runner=dask_task_runner)  # another job under the same name: the next version
    assert [(e["name"], e["version"], e["status"]) for e in changed["manifests"]] == [("fixed", 2, "written")]
    assert manifest_bytes(digits_store).items() >= before.items()


def _task_runs(flow_run_id):
    """``{task-run name: [state names in time order]}`` of one flow run's select jobs (through the Prefect API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def go():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            out = {}
            for tr in runs:
                if tr.name.startswith("select-"):
                    states = await client.read_task_run_states(tr.id)
                    out[tr.name] = [s.name for s in sorted(states, key=lambda s: s.timestamp)]
            return out

    return run_coro_as_sync(go())


@pytest.mark.slow
def test_a_worker_killed_mid_map_does_not_rerun_finished_jobs(digits_store, dask_cluster, dask_task_runner):
    """Kill -9 the worker holding finished results while other jobs run: Dask recomputes the lost keys, and the
    task-run cache (tasks/_task.py) answers them from the persisted results instead of running them again."""
    from distributed import Client

    spec = SelectionSpec(name="per-class-slow", objective="vendi", regime="per-class", quotas=20)
    box = {}
    runner = threading.Thread(target=lambda: box.update(
        result=run_select(SelectOptions(store=digits_store, selections=[spec]), task_runner=dask_task_runner)))
    killed = None
    with Client(dask_cluster.scheduler_address, timeout=30) as client:
        runner.start()
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and runner.is_alive():
            held = {w: [k for k in keys if "select" in str(k)] for w, keys in client.has_what().items()}
            busy = sum(len(v) for v in client.processing().values())
            worker = next((w for w, keys in held.items() if keys), None)
            if worker is not None and busy:
                pid = client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed = (worker, pid, len(held[worker]))
            time.sleep(0.05)
        runner.join(timeout=300)
        client.wait_for_workers(2, timeout=180)  # the nanny's replacement is up before other tests (or teardown) run
    assert killed is not None, "no worker held a finished job while others ran: the test could not kill one"
    assert "result" in box, "the flow did not finish after the worker was killed"
    states = _task_runs(box["result"]["flow_run_id"])
    assert len(states) == 10
    ran = {name: sum(s == "Running" for s in seq) - sum(s == "Cached" for s in seq) for name, seq in states.items()}
    assert all(n == 1 for n in ran.values()), states  # every job's function ran exactly once
    assert any("Cached" in seq for seq in states.values()), states  # ... though Dask asked again for lost ones
    X, y, _ = _pool(digits_store)
    man = mf.read_manifest(digits_store, "per-class-slow")
    for c in (0, 9):
        rows = np.flatnonzero(y == c)
        got = np.asarray(man["picks"]["rows"])[np.asarray(man["picks"]["classes"]) == c]
        assert got.tolist() == rows[np.asarray(worth.select(X[rows], 20, "vendi").indices)].tolist()


def test_bad_input_fails_in_the_flow_before_any_task(digits_store, prefect_api, manifest_bytes):
    from prefect.task_runners import ThreadPoolTaskRunner

    bad = SelectOptions(store=digits_store, selections=[SPECS[0], SelectionSpec(name="q", regime="per-class",
                                                                                 quotas=10_000)])
    with pytest.raises(ValueError, match="quota 10000 of class 0 is larger than the class"):
        run_select(bad, task_runner=ThreadPoolTaskRunner(max_workers=1))
    assert manifest_bytes(digits_store) == {}  # not even the good spec's manifest
