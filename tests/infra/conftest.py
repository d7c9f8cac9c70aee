"""Helpers for the infra tests: the CLI run as a user runs it, and the processes a state directory left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m flows.cli.services ARGS`` from the repository root, output captured as text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli.services", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def running(pids) -> list[int]:
    """The PIDs among ``pids`` whose process still runs (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def artifacts_dir(tmp_path, request) -> Path:
    """Where a test keeps what a person would look at (screenshots): ``$WORTH_TEST_ARTIFACTS`` or tmp_path."""
    base = os.environ.get("WORTH_TEST_ARTIFACTS")
    path = Path(base) / request.node.module.__name__.rsplit(".", 1)[-1] if base else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
