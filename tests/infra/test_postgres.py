"""Prefect and MLflow on a real PostgreSQL (Debian's server binaries, a throwaway data directory on a loopback
port) instead of SQLite: `worth services up --prefect-db/--mlflow-db`, a flow run and an MLflow run written
through the servers, and found in PostgreSQL's tables."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from infra.postgres import local_postgres, why_unavailable
from infra.processes import tagged_processes
from infra.services import PSYCOPG2_PIN, down, up

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable())),
]

HAS_PSYCOPG2 = importlib.util.find_spec("psycopg2") is not None


def _query(url: str, sql: str):
    import asyncpg

    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("pg-services")
    with local_postgres(("prefect", "mlflow")) as pg:
        t0 = time.monotonic()
        services = up(
            state, which="prefect,mlflow" if HAS_PSYCOPG2 else "prefect",
            prefect_db=pg.url("prefect"), mlflow_db=pg.url("mlflow") if HAS_PSYCOPG2 else None,
        )
        print(f"services on PostgreSQL up in {time.monotonic() - t0:.1f} s:",
              {s.name: round(s.seconds, 1) for s in services.services})
        try:
            yield pg, services
        finally:
            down(state)
            assert tagged_processes(state) == []


def test_local_postgres_serves_sql_on_loopback():
    with local_postgres(("a", "b")) as pg:
        rows = _query(pg.url("b"), "select current_database() as db, inet_server_addr()::text as addr")
        assert (rows[0]["db"], rows[0]["addr"].split("/")[0]) == ("b", "127.0.0.1")
        data_dir = pg.data_dir
        assert data_dir.is_dir()
    assert not data_dir.exists()  # stopped and removed


def test_prefect_runs_a_flow_on_postgres(pg_stack, tmp_path):
    pg, services = pg_stack
    info = json.loads((services.state_dir / "services.json").read_text())
    assert info["prefect"]["database"] == pg.url("prefect", driver="asyncpg")
    flow = "from prefect import flow\n@flow(name='pg-check')\ndef f():\n    return 42\nprint(f())\n"
    env = {**os.environ, "PREFECT_API_URL": services["prefect-server"].url, "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", flow], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "42"
    rows = _query(pg.url("prefect"), "select fr.state_type::text as state from flow_run fr join flow f "
                                     "on fr.flow_id = f.id where f.name = 'pg-check'")
    assert [r["state"] for r in rows] == ["COMPLETED"]
    pools = _query(pg.url("prefect"), "select type from work_pool where name = 'worth-local'")
    assert [r["type"] for r in pools] == ["process"]


@pytest.mark.skipif(not HAS_PSYCOPG2, reason=f"MLflow on PostgreSQL needs psycopg2: pip install {PSYCOPG2_PIN}")
def test_mlflow_logs_to_postgres(pg_stack):
    from mlflow import MlflowClient

    pg, services = pg_stack
    client = MlflowClient(tracking_uri=services["mlflow-server"].url)
    exp_id = client.create_experiment("worth-on-postgres")
    run = client.create_run(exp_id, run_name="pg-night")
    client.log_metric(run.info.run_id, "accuracy", 0.875)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.875}
    rows = _query(pg.url("mlflow"), f"select key, value from metrics where run_uuid = '{run.info.run_id}'")
    assert [(r["key"], r["value"]) for r in rows] == [("accuracy", 0.875)]
