"""kill -9 of `worth embed` leaves no temporary Prefect server behind (each used to leave ≈230 MB running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped yet
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server's death signal is Linux's prctl")
def test_kill_9_of_embed_leaves_no_prefect_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no API: the launcher starts one
    env.update(PYTHONPATH=ROOT, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli.main", "embed", "digits", "--store", str(tmp_path / "s.zarr"),
                             "--runner", "threads", "--chunk-rows", "20", "-p", "dim=8"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not servers and time.monotonic() < deadline and proc.poll() is None:
            servers = [c for c in _children(proc.pid) if "prefect.server.api.server:create_app" in _cmdline(c)]
            time.sleep(0.1)
        assert servers, "the embed run never started its Prefect server"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(_running(s) for s in servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [s for s in servers if _running(s)]
        assert not left, f"Prefect server(s) {left} outlived the killed launcher"
    finally:
        for pid in servers + ([proc.pid] if proc.poll() is None else []):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
