"""Cluster specs and the task runners they become (one test starts a one-worker cluster: the workers' malloc)."""

from __future__ import annotations

import copy
import os

import dask
import distributed  # noqa: F401  (its config defaults in place before the fixture snapshots dask.config)
import pytest

from infra.dask import (DASK_MALLOC_TRIM, WORKER_MALLOC, ClusterSpec, cluster_kwargs, cuda_spec, default_spec,
                        local_spec, scheduler_spec, task_runner, tune_worker_malloc)
from infra.dask import prefect_api as ensure_prefect_api


@pytest.fixture(autouse=True)
def _dask_config_restored():
    """cluster_kwargs tunes dask.config process-wide: each test here leaves it as it found it."""
    saved = copy.deepcopy(dask.config.config)
    yield
    dask.config.config.clear()
    dask.config.config.update(saved)


def _spawn_env() -> dict:
    return dict(dask.config.get("distributed.nanny.pre-spawn-environ"))


def test_local_spec_becomes_a_local_cluster_runner():
    from prefect_dask import DaskTaskRunner

    spec = local_spec(n_workers=2)
    cls, kw = cluster_kwargs(spec)
    assert cls == "distributed.LocalCluster"
    assert kw == {"dashboard_address": None, "n_workers": 2, "processes": True, "threads_per_worker": 1}
    runner = task_runner(spec)
    assert isinstance(runner, DaskTaskRunner) and runner.cluster_kwargs == kw


def test_cuda_spec_uses_dask_cuda():
    cls, kw = cluster_kwargs(cuda_spec(n_workers=1, CUDA_VISIBLE_DEVICES="0"))
    assert cls == "dask_cuda.LocalCUDACluster" and kw["n_workers"] == 1 and kw["CUDA_VISIBLE_DEVICES"] == "0"
    assert "threads_per_worker" not in kw


def test_scheduler_spec_connects_to_an_address():
    runner = task_runner(scheduler_spec("tcp://10.0.0.5:8786"))
    assert runner.address == "tcp://10.0.0.5:8786"
    assert default_spec("tcp://10.0.0.5:8786").kind == "address"


def test_default_spec_without_a_gpu_is_local(monkeypatch):
    monkeypatch.setattr("infra.dask.gpu_count", lambda: 0)
    assert default_spec().kind == "local"


@pytest.mark.parametrize("kw,match", [({"kind": "k8s"}, "kind="), ({"kind": "address"}, "address="),
                                      ({"n_workers": 0}, "n_workers="), ({"threads_per_worker": 0}, "threads_per_worker=")])
def test_bad_specs(kw, match):
    with pytest.raises(ValueError, match=match):
        ClusterSpec(**kw)


def test_prefect_api_uses_the_configured_server(prefect_api):
    with ensure_prefect_api() as url:  # a server is configured: no second one is started
        assert url == prefect_api == os.environ["PREFECT_API_URL"]


def test_local_workers_spawn_without_dasks_eager_trim(monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 makes every block over 128 KiB a fresh mmap (a third of a worker's
    CPU time in page faults, bench/README.md): a cluster from a spec spawns its workers with WORKER_MALLOC."""
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": DASK_MALLOC_TRIM})
    for name in WORKER_MALLOC:
        monkeypatch.delenv(name, raising=False)  # an earlier nanny in this process exports its own
    with LocalCluster(**cluster_kwargs(local_spec(1))[1]) as cluster, Client(cluster) as client:
        got = next(iter(client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC}).values()))
    assert got == {k: str(v) for k, v in WORKER_MALLOC.items()}
    assert _spawn_env()["OMP_NUM_THREADS"] == 1  # the rest of Dask's spawn environment is kept


@pytest.mark.parametrize("user", [{"MALLOC_TRIM_THRESHOLD_": 0}, {"MALLOC_MMAP_THRESHOLD_": 1 << 20}])
def test_a_users_own_malloc_setting_is_kept(user):
    dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in user.items()})
    before = _spawn_env()
    assert tune_worker_malloc() is False
    assert _spawn_env() == before


def test_an_existing_scheduler_is_not_tuned():
    before = _spawn_env()
    assert cluster_kwargs(scheduler_spec("tcp://10.0.0.5:8786")) == (None, {})
    assert _spawn_env() == before
