"""Shared fixtures: the array namespaces the core is tested on, and GPU gating."""

from __future__ import annotations

import importlib
import os

import numpy as np
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
