"""`worth services`: one real stack (Prefect server and process worker, MLflow server, Dask scheduler and two
workers) started once for this module on free ports, used as clients use it, then stopped with nothing left.

The tests run in file order: the last one stops the stack (the fixture's teardown stops it too if it fails).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from infra import browser
from infra.processes import family, tagged_processes
from infra.services import down, status, up
from tests.helpers import ROOT, running
from tests.helpers import services_cli as cli

pytestmark = pytest.mark.slow

EXPERIMENT = "worth-services-check"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("services")
    t0 = time.monotonic()
    services = up(state, dask_workers=2)
    print(f"services up in {time.monotonic() - t0:.1f} s:",
          {s.name: round(s.seconds, 1) for s in services.services if s.seconds is not None})
    try:
        yield services
    finally:
        down(state)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


def _post(url: str, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


def test_every_service_started_on_loopback_with_pid_and_log(stack):
    assert [s.name for s in stack.services] == [
        "prefect-server", "prefect-worker", "mlflow-server", "dask-scheduler", "dask-workers"]
    for s in stack.services:
        assert s.action == "started" and s.alive and s.seconds > 0
        assert (stack.state_dir / f"{s.name}.pid").read_text().strip() == str(s.pid)
        assert s.log == stack.state_dir / f"{s.name}.log" and s.log.stat().st_size > 0
    for s in stack.services:
        if s.url:
            assert s.url.split("//")[1].startswith("127.0.0.1:")
    info = json.loads((stack.state_dir / "services.json").read_text())
    assert info["prefect"]["api_url"] == stack["prefect-server"].url
    assert info["mlflow"]["database"] == f"sqlite:///{stack.state_dir / 'mlflow.db'}"


def test_prefect_server_is_healthy_and_the_worker_serves_a_process_pool(stack):
    api = stack["prefect-server"].url
    assert _get(f"{api}/health") is True
    pool = _get(f"{api}/work_pools/worth-local")
    assert pool["type"] == "process"
    workers = _post(f"{api}/work_pools/worth-local/workers/filter", {})
    assert [w["status"] for w in workers] == ["ONLINE"]
    # The UI is told to call this server's API, not the default port 4200.
    settings = _get(f"{stack.info['prefect']['ui_url']}/ui-settings")
    assert settings["api_url"] == api


def test_mlflow_logs_a_run_over_http_and_reads_it_back(stack):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack["mlflow-server"].url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    exp_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(exp_id, run_name="night-1")
    client.log_metric(run.info.run_id, "accuracy", 0.93)
    client.log_param(run.info.run_id, "k", "20")
    client.log_text(run.info.run_id, "curated ids\n", "curated.txt")
    client.set_terminated(run.info.run_id)

    back = client.get_run(run.info.run_id)
    assert back.data.metrics == {"accuracy": 0.93} and back.data.params == {"k": "20"}
    assert back.info.status == "FINISHED"
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["curated.txt"]
    # Artifacts go through the server into the state directory, not into the client's working directory.
    assert list((stack.state_dir / "mlartifacts").rglob("curated.txt"))


def test_dask_client_connects_and_computes(stack):
    from distributed import Client

    with Client(stack["dask-scheduler"].url, timeout=30) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        futures = client.map(lambda x: (x * x, os.getpid()), range(20))
        results = client.gather(futures)
    assert sum(r[0] for r in results) == sum(x * x for x in range(20))
    worker_pids = {p.pid for p in family(stack["dask-workers"].pid)}
    assert {r[1] for r in results} <= worker_pids  # computed in the worker processes we started


def test_env_lines_point_a_shell_at_the_services(stack):
    done = cli("env", "--state-dir", str(stack.state_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"export {k}={v}" for k, v in stack.env().items()]
    script = (
        f'eval "$({_cli_line(stack)})" && "$PY" -c "'
        "import os; from distributed import Client; c = Client(timeout=30); "
        "print(c.scheduler.address, os.environ['PREFECT_API_URL'], os.environ['MLFLOW_TRACKING_URI']); c.close()\""
    )
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PY": sys.executable})
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == [stack["dask-scheduler"].url, stack["prefect-server"].url, stack["mlflow-server"].url]


def _cli_line(stack) -> str:
    """The shell command a user types, ``worth services env --state-dir DIR``, as this checkout runs it."""
    return (f"cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} {shlex.quote(sys.executable)} "
            f"-m flows.cli.services env --state-dir {shlex.quote(str(stack.state_dir))}")


def test_status_says_what_runs_where(stack):
    seen = status(stack.state_dir)
    assert [(s.name, s.pid, s.alive, s.url) for s in seen.services] == [
        (s.name, s.pid, True, s.url) for s in stack.services]
    done = cli("status", "--state-dir", str(stack.state_dir))
    assert done.returncode == 0, done.stderr
    for s in stack.services:
        line = next(line for line in done.stdout.splitlines() if line.startswith(s.name + " "))
        assert str(s.pid) in line and "running" in line and (s.url or "") in line


def test_up_again_reuses_everything(stack):
    t0 = time.monotonic()
    again = up(stack.state_dir, dask_workers=2)
    took = time.monotonic() - t0
    assert [(s.name, s.pid, s.action) for s in again.services] == [(s.name, s.pid, "reused") for s in stack.services]
    assert took < 10, f"reusing running services took {took:.1f} s"
    done = cli("up", "--state-dir", str(stack.state_dir), "--only", "prefect", "--prefect-port", "1")
    assert done.returncode == 2 and "already runs on port" in done.stderr


def test_a_killed_service_is_stale_and_up_restarts_only_it(stack):
    old = stack["dask-workers"].pid
    victims = family(old)
    os.killpg(old, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    assert {s.name: s.action for s in status(stack.state_dir).services}["dask-workers"] == "stale"
    assert cli("status", "--state-dir", str(stack.state_dir)).returncode == 1

    again = up(stack.state_dir, dask_workers=2)
    actions = {s.name: (s.action, s.pid) for s in again.services}
    assert actions["dask-workers"][0] == "started" and actions["dask-workers"][1] != old
    assert all(action == "reused" for name, (action, _) in actions.items() if name != "dask-workers")
    from distributed import Client

    with Client(again["dask-scheduler"].url, timeout=30) as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_a_half_dead_mlflow_server_is_seen_and_reaped(stack):
    """kill -9 of the MLflow server's recorded process left its uvicorn worker serving the old port, shown as
    "stale", while `up` started a second server on a new port (issue 21 §4). Now `status` says half-dead and
    names what is left; `up` stops that process group and restarts the server on its old port."""
    state = stack.state_dir
    before = status(state)["mlflow-server"]
    workers = [p for p in family(before.pid) if p.pid != before.pid]
    assert workers, "the MLflow server runs its worker as a child"
    os.kill(before.pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(before.pid)], timeout=10)
    assert running([w.pid for w in workers]), "the worker outlives its killed parent"

    seen = status(state)["mlflow-server"]
    assert seen.action == "half-dead" and {w.pid for w in workers} <= set(seen.remnants)
    said = cli("status", "--state-dir", str(state))
    assert said.returncode == 1 and "half-dead" in said.stdout
    assert f"mlflow-server: its process {before.pid} is gone" in said.stderr

    again = up(state, dask_workers=2)
    restarted = again["mlflow-server"]
    assert restarted.action == "started" and restarted.url == before.url  # the address clients were given
    assert running([w.pid for w in workers]) == []  # the old worker went with its group
    mine = {p.pid for p in family(restarted.pid)}
    servers = [p for p in tagged_processes(state) if "mlflow" in " ".join(p.cmdline())]
    assert {p.pid for p in servers} <= mine, "a second MLflow server runs beside the restarted one"
    assert all(a == "reused" for s, a in ((s.name, s.action) for s in again.services) if s != "mlflow-server")


@pytest.mark.browser
@pytest.mark.skipif(browser.chromium() is None, reason="no chromium (apt-get install chromium)")
def test_prefect_ui_renders_the_pool_and_its_navigation(stack, artifacts_dir):
    ui = stack.info["prefect"]["ui_url"]
    words = ("Work Pools", "Deployments", "Flows", "worth-local", "Process")
    page = browser.render(f"{ui}/work-pools", screenshot=artifacts_dir / "prefect-work-pools.png", expect=words)
    assert page.screenshot.stat().st_size > 10_000
    for word in words:
        assert word in page.text, f"{word!r} not on the rendered Prefect page: {page.text[:500]}"


@pytest.mark.browser
@pytest.mark.skipif(browser.chromium() is None, reason="no chromium (apt-get install chromium)")
def test_mlflow_ui_renders_the_experiment_and_its_run(stack, artifacts_dir):
    from mlflow import MlflowClient

    uri = stack["mlflow-server"].url
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    exp_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(exp_id, run_name="night-ui")
    client.log_metric(run.info.run_id, "accuracy", 0.91)
    client.set_terminated(run.info.run_id)

    words = (EXPERIMENT, "night-ui")
    page = browser.render(f"{uri}/#/experiments/{exp_id}/runs", screenshot=artifacts_dir / "mlflow-runs.png",
                          expect=words)
    assert page.screenshot.stat().st_size > 10_000
    for word in words:
        assert word in page.text, f"{word!r} not on the rendered MLflow page: {page.text[:500]}"


def test_down_stops_everything_and_leaves_no_process(stack):
    pids = {p.pid for s in status(stack.state_dir).services for p in family(s.pid)}
    tagged = {p.pid for p in tagged_processes(stack.state_dir)}
    assert len(pids) >= 8 and pids == tagged  # servers, uvicorn, nannies, worker processes ... all tagged

    done = cli("down", "--state-dir", str(stack.state_dir))
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert running(pids) == [] and tagged_processes(stack.state_dir) == []
    assert list(stack.state_dir.glob("*.pid")) == []
    assert status(stack.state_dir).services == ()
    for name in ("prefect-server", "prefect-worker", "mlflow-server", "dask-scheduler", "dask-workers"):
        assert any(line.startswith(name + " ") and "stopped" in line for line in done.stdout.splitlines()), done.stdout
    again = cli("down", "--state-dir", str(stack.state_dir))
    assert again.returncode == 0 and "nothing runs" in again.stdout
