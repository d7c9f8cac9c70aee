"""`worth services` refuses bad input with one line on stderr and exit 2, before it starts anything; stale pid
files are told apart from running services, and a reused PID is never signalled."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import psutil
import pytest

from infra.processes import pid_file
from infra.services import down, status
from tests.helpers import services_cli as cli


@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _cases(tmp_path, busy_port):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return {
        "busy-port": (["--only", "prefect", "--prefect-port", str(busy_port)], "--prefect-port", "busy"),
        "busy-mlflow-port": (["--only", "mlflow", "--mlflow-port", str(busy_port)], "--mlflow-port", "busy"),
        "unwritable-state-dir": (["--state-dir", str(blocker / "sub")], "--state-dir", "not a writable directory"),
        "unknown-group": (["--only", "prefect,airflow"], "--only", "choose among prefect,mlflow,dask"),
        "zero-workers": (["--only", "dask", "--dask-workers", "0"], "--dask-workers", "at least 1"),
        "bad-prefect-db": (["--only", "prefect", "--prefect-db", "mysql://u:secret@h/db"], "--prefect-db", "postgresql+asyncpg"),
    }


@pytest.mark.parametrize(
    "case", ["busy-port", "busy-mlflow-port", "unwritable-state-dir", "unknown-group", "zero-workers", "bad-prefect-db"]
)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, busy_port):
    args, names, says = _cases(tmp_path, busy_port)[case]
    state = tmp_path / "state"
    if "--state-dir" not in args:
        args = ["--state-dir", str(state), *args]
    done = cli("up", *args, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert names in lines[0] and says in lines[0]
    assert "secret" not in done.stderr  # a password in a URL is not echoed
    assert not list(state.glob("*.pid")), "nothing may start on bad input"


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is not None, reason="psycopg2 is installed here")
def test_mlflow_on_postgres_without_psycopg2_names_the_pin(tmp_path):
    done = cli("up", "--state-dir", str(tmp_path), "--only", "mlflow", "--mlflow-db", "postgresql://u@127.0.0.1:1/db")
    assert done.returncode == 2
    assert "pip install psycopg2-binary==" in done.stderr


def test_env_and_status_with_nothing_running(tmp_path):
    done = cli("env", "--state-dir", str(tmp_path))
    assert done.returncode == 1 and "worth services up" in done.stderr and "Traceback" not in done.stderr
    done = cli("status", "--state-dir", str(tmp_path))
    assert done.returncode == 0 and "nothing runs" in done.stdout


@pytest.mark.parametrize("kind", ["dead-pid", "reused-pid"])
def test_stale_pid_file_is_reported_and_cleared_without_signalling(kind, tmp_path):
    """A dead PID, or a live PID that is not the process we started (PID reuse), is stale: ``down`` removes the
    pid file and signals nothing."""
    if kind == "dead-pid":
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        pid, started = child.pid, 0.0
    else:
        pid, started = os.getpid(), psutil.Process().create_time() - 3600.0  # this test process, "started" earlier
    pid_file(tmp_path, "prefect-server").write_text(f"{pid}\n")
    (tmp_path / "prefect-server.start").write_text(repr(started))

    seen = status(tmp_path)
    assert [(s.name, s.pid, s.alive, s.action) for s in seen.services] == [("prefect-server", pid, False, "stale")]
    assert seen.env() == {}
    done = cli("status", "--state-dir", str(tmp_path))
    assert done.returncode == 1 and "stale" in done.stdout and "stale pid files" in done.stderr

    gone = down(tmp_path)
    assert [(s.name, s.action) for s in gone.services] == [("prefect-server", "stale")]
    assert not pid_file(tmp_path, "prefect-server").exists()
    assert psutil.pid_exists(os.getpid())
