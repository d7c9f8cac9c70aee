"""Shared fixtures: the array namespaces the core is tested on, GPU gating, and the orchestration harness.

The harness (flows, the appraisal study): one Prefect test server and one real Dask LocalCluster (worker
processes) per session, whichever test directories use them. Facts behind the choices (STACK.md):
* ``prefect_test_harness`` takes 14–18 s to come up, so there is one per session; its address is exported as
  ``PREFECT_API_URL`` before the cluster starts, so Dask worker processes report to it instead of each starting
  an ephemeral server of their own (the trap).
* ``PREFECT_HOME`` is a temporary folder and analytics are off, both set before Prefect is first imported.
"""

from __future__ import annotations

import importlib
import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="worth-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _gpu_available() -> bool:
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # a broken driver is "no GPU", not a test failure
        return False


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where a GPU is present; they are skipped, never run on the CPU instead."""
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (cupy.is_available() is False here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


NAMESPACES = ["numpy", "torch", "array_api_strict"]


@pytest.fixture(params=NAMESPACES)
def xp(request):
    """An array-API namespace: NumPy, torch (CPU) and array-api-strict, as array-api-extra does."""
    if request.param == "torch":
        pytest.importorskip("torch")
        import array_api_compat.torch as xp_torch

        return xp_torch
    if request.param == "array_api_strict":
        return pytest.importorskip("array_api_strict")
    import array_api_compat.numpy as xp_np

    return xp_np


def make_instance(kind: str, n: int, m: int, seed: int = 0) -> np.ndarray:
    """Random embedding matrices that exercise the hard cases of the secular path.

    ``gaussian``: general position. ``duplicates``: every row appears twice (zero weights, repeated
    eigenvalues). ``clustered``: three rows in four are exact coordinate axes (equal eigenvalues that must
    be merged into one pole). ``lowrank``: rank m // 2 (a zero eigenspace even when |S| > m).
    ``near-degenerate``: rows within 1e-3 of three directions (eigenvalues down to ~1e-9: φ with an
    unbounded slope at 0, like ``t**0.2``, is ill-conditioned there for every method, the oracle included).
    """
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        X = rng.normal(size=(n, m))
    elif kind == "duplicates":
        half = rng.normal(size=((n + 1) // 2, m))
        X = np.concatenate([half, half])[:n]
    elif kind == "clustered":
        X = np.eye(m)[rng.integers(0, m, size=n)]
        mixed = rng.random(n) < 0.25
        X[mixed] = rng.normal(size=(int(mixed.sum()), m))
    elif kind == "near-degenerate":
        centres = rng.normal(size=(3, m))
        X = centres[rng.integers(0, 3, size=n)] + 1e-3 * rng.normal(size=(n, m))
    elif kind == "lowrank":
        X = rng.normal(size=(n, m // 2)) @ rng.normal(size=(m // 2, m))
    else:
        raise ValueError(kind)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


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
