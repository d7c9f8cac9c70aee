"""Session fixtures for flow tests: one Prefect test server, one real Dask LocalCluster (worker processes).

Registered for the whole suite by ``tests/conftest.py`` (``pytest_plugins``), so the flow tests of every folder
(tests/flows, tests/curate, ...) share one server and one cluster per session. Facts behind the choices (docs/stack.md):
* ``prefect_test_harness`` takes 14–18 s to come up, so there is one per session; its address is exported as
  ``PREFECT_API_URL`` before the cluster starts, so Dask worker processes report to it instead of each starting
  an ephemeral server of their own (the trap).
* ``PREFECT_HOME`` is a temporary folder and analytics are off, both set before Prefect is first imported.
"""

from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="worth-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect API (test harness, temporary SQLite) for the whole session; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # inherited by subprocesses and Dask workers started from now on
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous


@pytest.fixture(scope="session")
def dask_cluster(prefect_api):
    """A real ``LocalCluster`` of 2 worker processes, 1 thread each, started after the Prefect API."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def dask_task_runner(dask_cluster):
    """A Prefect task runner on the session cluster: bind it with ``flow.with_options(task_runner=...)``."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=dask_cluster.scheduler_address)


@pytest.fixture
def read_artifacts(prefect_api):
    """``read_artifacts(key, flow_run_id=None)`` → the artifacts with that key, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.utilities.asyncutils import run_coro_as_sync

    def read(key: str, flow_run_id=None):
        async def go():
            async with get_client() as client:
                flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]),
                                     flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None)
                return await client.read_artifacts(artifact_filter=flt, sort=ArtifactSort.CREATED_DESC)

        return run_coro_as_sync(go())

    return read
