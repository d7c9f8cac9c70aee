"""`worth curate` from the command line, as a user runs it: its own temporary Prefect server, stopped when the
command ends. What it prints, and the link the MLflow run keeps, must still work afterwards (issue 20 §3): the
Prefect page is given on the server that the printed command starts on the same database, never on the
temporary server's port, and the MLflow UI by the command that opens the store.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_a_night_from_the_cli_prints_links_that_outlive_it(tmp_path):
    from mlflow.tracking import MlflowClient

    from storage import curated

    home, tracking = tmp_path / "prefect-home", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"})
    store = tmp_path / "digits.zarr"
    done = subprocess.run([sys.executable, "-m", "flows.cli.main", "curate", "digits", "--store", str(store),
                           "--limit", "300", "--k", "10", "--runner", "threads", "--tracking-uri", tracking],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    v1 = curated.read_version(str(store) + ".curated")
    page = f"http://127.0.0.1:4200/runs/flow-run/{v1['flow_run_id']}"
    reopen = f"PREFECT_HOME={home} prefect server start --host 127.0.0.1 --port 4200"
    assert f"Prefect: {reopen}\n           then {page}\n" in out, out
    assert "View at" not in out + done.stderr  # the temporary server's address is gone with the command
    mlflow_ui = f"MLflow:  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {tracking} --workers 1"
    assert mlflow_ui in out, out
    assert (f"this night: http://127.0.0.1:5000/#/experiments/{v1['mlflow_experiment_id']}/runs/"
            f"{v1['mlflow_run_id']})") in out
    # the MLflow run links the same page, and says how to serve it
    run = MlflowClient(tracking_uri=tracking).get_run(v1["mlflow_run_id"])
    assert run.data.tags["worth.flow_run_url"] == page
    assert run.data.tags["mlflow.note.content"].endswith(f"Prefect flow run: {page} (serve it with `{reopen}`)")
    # and the database that command serves holds the flow run, under the name it was given
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute("SELECT name FROM flow_run WHERE id = ?", (v1["flow_run_id"],)).fetchall()
    assert rows == [("curate-digits-v0001",)]


@pytest.mark.parametrize("temporary,expected", [(True, True), (False, False)])
def test_prefect_reopen_only_for_a_temporary_server(monkeypatch, tmp_path, temporary, expected):
    from infra.dask import TEMPORARY_API_ENV, prefect_reopen

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:8123/api")
    if temporary:
        monkeypatch.setenv(TEMPORARY_API_ENV, "http://127.0.0.1:8123/api")
    else:
        monkeypatch.delenv(TEMPORARY_API_ENV, raising=False)
    reopen = prefect_reopen()
    if expected:
        assert reopen["ui"] == "http://127.0.0.1:4200" and "prefect server start --host 127.0.0.1 --port 4200" in (
            reopen["command"])
        assert reopen["command"].startswith("PREFECT_HOME=")
    else:
        assert reopen is None
