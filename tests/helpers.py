"""What the tests share that is not a fixture: test data, the kill -9 of a process, the CLI run as a user runs it.

A module of plain functions, imported as ``from tests.helpers import ...`` (conftest files hold fixtures only, and
pytest does not mean them to be imported). Fixtures that need one of these call it from their conftest.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ test data
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


def make_digits_store(url: str | os.PathLike, *, dim: int = 16, seed: int = 3, chunk_rows: int = 256,
                      limit: int | None = None) -> str:
    """A complete, labelled digits store at ``url``: the pixels projected to ``dim`` dimensions (seeded), embedded
    inline (``storage.embed_into_store``, no Prefect) in chunks of ``chunk_rows``. The one factory of the suite:
    folders differ only in the arguments."""
    from storage import embed_into_store
    from worth.data.encoders import get_encoder
    from worth.data.sources import load_source

    url = str(url)
    embed_into_store(url, load_source("digits", limit=limit), get_encoder("pixels", dim=dim, seed=seed),
                     chunk_rows=chunk_rows)
    return url


def copy_store(template: str, where: str | os.PathLike) -> str:
    """A private copy of the store ``template`` at ``where`` (what one test writes never reaches another)."""
    shutil.copytree(template, str(where))
    return str(where)


def files_under(root: str | os.PathLike, *, skip: str | None = None, only: str | None = None) -> dict[str, bytes]:
    """Every file under ``root``: relative path → bytes; names matching regex ``skip`` are left out, and with
    ``only`` just the names matching it are kept."""
    out = {}
    for dirpath, _, files in os.walk(str(root)):
        for f in files:
            if (skip and re.search(skip, f)) or (only and not re.fullmatch(only, f)):
                continue
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, str(root))] = fh.read()
    return out


def chunk_files(root) -> dict[str, bytes]:
    """Every chunk object of a store's ``embeddings`` array: key → bytes."""
    return files_under(os.path.join(str(root), "embeddings", "c"), skip=r"\.partial")


def manifest_files(url: str, published: bool = False) -> dict[str, bytes]:
    """Every file under the store's ``selections/`` folder (only ``NAME/vNNNN.json`` with ``published``):
    relative path → bytes."""
    return files_under(os.path.join(url, "selections"), only=r"v\d{4,}\.json" if published else None)


# ------------------------------------------------------------------------------------------------ processes
def kill_9_when(cmd: Sequence[str], ready: Callable[[], bool], *, env: dict | None = None,
                cwd: str | os.PathLike = ROOT, timeout: float = 240, poll: float = 0.05,
                what: str = "the run") -> subprocess.Popen:
    """Start ``cmd``, wait until ``ready()`` holds, then kill it with a real SIGKILL; return the dead process.

    Fails the test when the process ends (or ``timeout`` passes) before it is ready to be killed — a kill that
    never happened proves nothing — and when it did not die of the SIGKILL. The process is killed in any case.
    """
    proc = subprocess.Popen(list(cmd), env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(poll)
        assert proc.poll() is None, f"{what} ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert ready(), f"{what} was not ready to be killed after {timeout:.0f} s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return proc


def running(pids) -> list[int]:
    """The PIDs among ``pids`` whose process still runs (zombies count as gone)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


# ------------------------------------------------------------------------------------------------ the CLI
def services_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m flows.cli.services ARGS`` from the repository root, output captured as text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli.services", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


class Outcome:
    """Exit code and the stderr lines of one in-process ``worth`` invocation (a CliRunner result)."""

    def __init__(self, result):
        self.code = result.exit_code
        self.stdout = result.stdout
        self.lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.exception = result.exception

    @property
    def line(self) -> str:
        return self.lines[0] if self.lines else ""


def assert_one_line(out: Outcome, code: int, *fragments: str) -> None:
    """Exit ``code``, exactly one line on stderr, no traceback, every fragment in that line."""
    assert out.code == code, (out.code, out.lines, out.exception)
    assert len(out.lines) == 1, out.lines
    assert out.line.startswith("error: ") and "Traceback" not in out.line
    for fragment in fragments:
        assert fragment in out.line, (fragment, out.line)
