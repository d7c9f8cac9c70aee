"""bench/worker_malloc.py runs the same worker work in a worker spawned with Dask's malloc setting and with worth's
(here on digits, a short path): each worker really spawns with its setting, the results are equal, a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_both_settings_side_by_side():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "worker_malloc.py"), "--picks", "20", "--repeat", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "dask  workers spawn with {'MALLOC_TRIM_THRESHOLD_': '65536', 'MALLOC_MMAP_THRESHOLD_': None}" in out
    assert "worth workers spawn with {'MALLOC_TRIM_THRESHOLD_': '268435456', 'MALLOC_MMAP_THRESHOLD_': '33554432'}" in out
    assert "| train | worth |" in out and "| path | dask |" in out
    assert "results equal across settings and rounds: True" in out
