"""Shared fixtures: the array namespaces the core is tested on, and GPU gating."""

from __future__ import annotations

import importlib
import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# one Prefect test server and one Dask LocalCluster per session, for the flow tests of every folder
pytest_plugins = ("tests.prefect_fixtures",)


def _gpu_available() -> bool:
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # a broken driver is "no GPU", not a test failure
        return False


#: The session fixtures that start a Prefect server or a Dask cluster (tests/prefect_fixtures.py): a test that
#: uses one, directly or through another fixture, is a flow test.
FLOW_FIXTURES = frozenset({"prefect_api", "dask_cluster", "dask_task_runner", "read_artifacts"})


def pytest_collection_modifyitems(config, items):
    """Flow tests are marked ``flow`` by the fixtures they use (``make test-fast`` deselects them: no Prefect
    server, no Dask cluster); GPU tests run only where a GPU is present — skipped, never run on the CPU instead."""
    flow = pytest.mark.flow
    for item in items:
        if FLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(flow)
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
