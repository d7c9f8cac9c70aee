"""Cluster specs and the task runners they become (no cluster is started here)."""

from __future__ import annotations

import os

import pytest

from infra.dask import ClusterSpec, cluster_kwargs, cuda_spec, default_spec, local_spec, scheduler_spec, task_runner
from infra.dask import prefect_api as ensure_prefect_api


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
