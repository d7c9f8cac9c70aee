"""kill -9 of a launcher leaves nothing running: each command, each runner (issue 21 §4).

kill -9 of `worth select`, `study` or `curate` with ``--runner threads`` used to leave the temporary Prefect
server (≈ 230 MB) running, 6 times of 6, while the dask runner and `embed` left nothing. One mechanism serves
every runner now: :func:`flows.runtime.launch` starts the one temporary server through
:func:`infra.dask.prefect_api`, whose server process gets ``PR_SET_PDEATHSIG`` (the kernel signals it when the
launcher dies, however it dies); Dask's worker processes watch their parent themselves.

What is counted: every process that carries a marker in its environment, set for the launcher only, so every
process it started — the server, Dask nannies and workers, anything that left its process group — is seen,
and nothing else is. The kill is :func:`tests.helpers.kill_9_when`, once the run is well under way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid

import pytest

from infra.processes import processes_with_env
from tests.helpers import ROOT, kill_9_when, make_digits_store

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server's death signal is Linux's")]

MARK = "WORTH_KILL_TEST"
UNDER_WAY = 4.0  # seconds the server (and, for dask, the workers) run before the kill: the flow is mid-run


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A labelled digits store and a list of selection specs that keeps the select flow busy for a while."""
    d = tmp_path_factory.mktemp("killed")
    specs = d / "specs.json"
    specs.write_text(json.dumps([{"name": f"s{i}", "objective": "vendi", "k": 200} for i in range(30)]))
    return {"store": make_digits_store(d / "pool.zarr"), "specs": str(specs)}


def _argv(command: str, runner: str, pool: dict, tmp) -> list[str]:
    if command == "embed":
        args = ["embed", "digits", "--store", str(tmp / "e.zarr"), "--chunk-rows", "20", "-p", "dim=8"]
    elif command == "select":
        args = ["select", "--store", pool["store"], "--specs", pool["specs"]]
    elif command == "study":
        args = ["study", "--store", pool["store"], "--quick", "--out", str(tmp / "report"),
                "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"]
    else:
        args = ["curate", "digits", "--store", str(tmp / "c.zarr"), "--k", "200",
                "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"]
    workers = ["--workers", "2"] if runner == "dask" else []
    return [sys.executable, "-m", "flows.cli.main", *args, "--runner", runner, *workers]


@pytest.mark.parametrize("command,runner", [
    ("select", "threads"), ("study", "threads"), ("curate", "threads"), ("embed", "threads"),
    ("select", "dask"), ("select", "inline"),
])
def test_kill_9_of_the_launcher_leaves_no_process(command, runner, pool, tmp_path):
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update({MARK: marker, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    t0 = time.monotonic()
    since: dict[str, float] = {}
    started: dict[int, str] = {}  # every process the launcher started, by PID: its command line

    def under_way() -> bool:
        for p in processes_with_env(MARK, marker):
            try:
                started.setdefault(p.pid, " ".join(p.cmdline())[:160])
            except Exception:  # gone meanwhile
                pass
        kinds = {"server": any("uvicorn" in c for c in started.values()),
                 "workers": any("spawn_main" in c for c in started.values())}
        needed = {"inline": [], "threads": ["server"], "dask": ["server", "workers"]}[runner]
        if not all(kinds[k] for k in needed):
            return False
        since.setdefault("ready", time.monotonic())
        return time.monotonic() - since["ready"] > UNDER_WAY and time.monotonic() - t0 > UNDER_WAY

    killed = kill_9_when(_argv(command, runner, pool, tmp_path), under_way, env=env, cwd=tmp_path, poll=0.25,
                         what=f"worth {command} --runner {runner}")
    started.pop(killed.pid, None)
    if runner != "inline":
        assert started, "the launcher started no process: nothing was tested"
    deadline = time.monotonic() + 30  # the death signal is SIGTERM: a server takes a moment to stop
    left = processes_with_env(MARK, marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = processes_with_env(MARK, marker)
    try:
        assert left == [], (f"{len(left)} of the {len(started)} processes the killed launcher started still run: "
                            + "; ".join(started.get(p.pid, str(p.pid)) for p in left))
    finally:
        for p in left:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
