"""Fixtures of the infra tests (their helpers — the services CLI, the processes a state directory left behind —
are in :mod:`tests.helpers`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

@pytest.fixture
def artifacts_dir(tmp_path, request) -> Path:
    """Where a test keeps what a person would look at (screenshots): ``$WORTH_TEST_ARTIFACTS`` or tmp_path."""
    base = os.environ.get("WORTH_TEST_ARTIFACTS")
    path = Path(base) / request.node.module.__name__.rsplit(".", 1)[-1] if base else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
