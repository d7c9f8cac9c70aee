"""``worth services up|down|status|env``: the local Prefect, MLflow and Dask services (:mod:`infra.services`).

Runnable on its own as ``python -m flows.cli.services ...``. Errors print one line on stderr and exit 1 (a service
failed or was not found) or 2 (bad input), without a traceback: the error path of every command,
:mod:`flows.cli.errors`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from flows.cli.errors import OneLineErrors, bad_input, failed

app = typer.Typer(
    name="services",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Start, stop and report the local Prefect server and worker, MLflow server and Dask cluster.",
)

STATE_DIR = typer.Option(
    None, "--state-dir", help="Directory of pid files, logs, databases and services.json "
    "(default: $XDG_STATE_HOME/worth/services or ~/.local/state/worth/services)."
)


def _run(call, *args, **kwargs):
    """Call the infra function; its BadArgument is bad input (exit 2), any other ServiceError a run-time failure
    that :class:`~flows.cli.errors.OneLineErrors` reports (exit 1)."""
    from infra.services import BadArgument

    try:
        return call(*args, **kwargs)
    except BadArgument as exc:
        raise bad_input(exc) from None


def _table(services, show_seconds: bool) -> None:
    rows = [("SERVICE", "PID", "STATE", "SECONDS" if show_seconds else "", "URL")]
    for s in services.services:
        seconds = f"{s.seconds:.1f}" if show_seconds and s.seconds is not None else ""
        rows.append((s.name, str(s.pid or "-"), s.action, seconds, s.url or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths) if w).rstrip())


@app.command()
def up(
    state_dir: Optional[Path] = STATE_DIR,
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated groups: prefect,mlflow,dask (default all)."),
    dask_workers: Optional[int] = typer.Option(None, "--dask-workers", help="Dask worker processes, one thread each (default: one per core)."),
    prefect_port: Optional[int] = typer.Option(None, "--prefect-port", help="Prefect server port (default: a free one)."),
    mlflow_port: Optional[int] = typer.Option(None, "--mlflow-port", help="MLflow server port (default: a free one)."),
    dask_port: Optional[int] = typer.Option(None, "--dask-port", help="Dask scheduler port (default: a free one)."),
    prefect_db: Optional[str] = typer.Option(None, "--prefect-db", help="Prefect database URL, e.g. postgresql://USER:PASS@HOST:PORT/DB (default: SQLite in the state dir)."),
    mlflow_db: Optional[str] = typer.Option(None, "--mlflow-db", help="MLflow backend store URL, e.g. postgresql://... (needs psycopg2; default: SQLite in the state dir)."),
    pool: str = typer.Option("worth-local", "--pool", help="Prefect process work pool the worker serves."),
) -> None:
    """Start what is not running (and reuse what is); print what runs where."""
    from infra.services import up as start

    ports = {k: v for k, v in (("prefect", prefect_port), ("mlflow", mlflow_port), ("dask", dask_port)) if v is not None}
    services = _run(
        start, state_dir, which=only, ports=ports, dask_workers=dask_workers, prefect_db=prefect_db,
        mlflow_db=mlflow_db, pool=pool,
    )
    _table(services, show_seconds=True)
    if "prefect" in services.info and any(s.name == "prefect-server" for s in services.services):
        typer.echo(f"Prefect UI: {services.info['prefect']['ui_url']}  (work pool {services.info['prefect']['pool']})")
    if "mlflow" in services.info and any(s.name == "mlflow-server" for s in services.services):
        typer.echo(f"MLflow UI:  {services.info['mlflow']['tracking_uri']}")
    if "dask" in services.info and any(s.name == "dask-scheduler" for s in services.services):
        typer.echo(f"Dask dashboard: {services.info['dask']['dashboard_url']}/status")
    flag = f" --state-dir {shlex.quote(str(services.state_dir))}" if state_dir is not None else ""
    typer.echo(f"Point clients at them: eval \"$(worth services env{flag})\"")


@app.command()
def down(state_dir: Optional[Path] = STATE_DIR) -> None:
    """Stop every service of the state directory, children included; remove stale pid files."""
    from infra.services import down as stop

    services = _run(stop, state_dir)
    if not services.services:
        typer.echo(f"nothing runs from {services.state_dir}")
        return
    _table(services, show_seconds=True)


@app.command()
def status(state_dir: Optional[Path] = STATE_DIR) -> None:
    """What runs where: each service's PID, whether it runs (or is half-dead, or its pid file is stale) and its URL.

    Exits 1 when a pid file is stale (its process is gone, or only what it started runs), so scripts can check
    the stack with it.
    """
    from infra.services import status as read

    services = _run(read, state_dir)
    if not services.services:
        typer.echo(f"nothing runs from {services.state_dir}")
        return
    _table(services, show_seconds=False)
    for s in services.services:
        if s.action == "half-dead":
            typer.echo(f"{s.name}: its process {s.pid} is gone but {len(s.remnants)} it started still run (pid "
                       f"{', '.join(map(str, s.remnants))}), perhaps on its old port: `worth services up` stops them "
                       "and restarts it, `down` stops them", err=True)
    if any(not s.alive for s in services.services):
        typer.echo("stale pid files: `worth services up` restarts those services, `down` clears them", err=True)
        raise typer.Exit(1)


@app.command()
def env(state_dir: Optional[Path] = STATE_DIR) -> None:
    """Print ``export`` lines for clients: ``eval "$(worth services env)"``."""
    from infra.services import client_env

    found = _run(client_env, state_dir)
    if not found:
        where = state_dir or "the default state directory"
        raise failed(f"no running services in {where}: start them with `worth services up`")
    for key, value in found.items():
        typer.echo(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    app(prog_name="worth services")
