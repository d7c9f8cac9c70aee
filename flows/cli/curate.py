"""Commands of the nightly curation: ``curate`` (one night, the Prefect curate flow) and ``demo`` (two nights on digits)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from flows.cli.errors import refusing
from flows.cli.options import launch, runner_option, scheduler_option, store_option, workers_option
from flows.cli.params import parse_params


def curate_command(
    source: str = typer.Argument(..., help="the pool: digits, mnist5k, fashion-mnist, an image folder, a file, hf:NAME"),
    store: str = store_option("Zarr store of the pool (new items are appended)"),
    k: int = typer.Option(50, "--k", min=1, help="items added tonight (at most)"),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="largest size of the curated set overall"),
    objective: str = typer.Option("auto", "--objective", "-o",
                                  help="objective the additions maximise; auto: the latest study of this store's "
                                       "best predictor that can tell items apart, else facility-location"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="objective parameter KEY=VALUE (repeat)"),
    encoder: str = typer.Option("pixels", "--encoder", "-e", help="encoder of the store"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="only the first N items have arrived"),
    curated: Optional[str] = typer.Option(None, "--curated", help="folder of the versions (default STORE.curated)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri",
                                               help="MLflow URI (default: $MLFLOW_TRACKING_URI, else STORE's folder/mlflow.db)"),
    runner: str = runner_option("steps"),
    workers: Optional[int] = workers_option("steps"),
    scheduler: Optional[str] = scheduler_option(),
    as_json: bool = typer.Option(False, "--json", help="print the night's record as JSON"),
) -> None:
    """Curate one night: embed new items, add the best of them to the curated set, train, log, publish a version.

    Bad options exit 2; a night that fails once started — another run holds the lock or published first, a step
    failed — exits 1 (:mod:`flows.cli.errors`), and publishes nothing.
    """
    from flows.curate import CurateOptions, run_curate
    from flows.cli.render import night_text, records_text

    target = launch(runner, workers, scheduler)
    # what the night refuses before it starts (options, source, encoder, objective, the curated folder) is bad
    # input; a held lock, a lost compare-and-swap or a failed step (RuntimeError, OSError) is a run-time failure
    with refusing():
        options = CurateOptions(source=source, store=store, k=k, budget=budget, objective=objective,
                                objective_params=parse_params(param, "--param"), encoder=encoder, limit=limit,
                                curated=curated, tracking_uri=tracking_uri)
        result = run_curate(options, **target)
    if as_json:
        typer.echo(json.dumps(result["record"], indent=1, default=str))
    else:  # what was curated, then where it is recorded: commands that still work now that this one has ended
        typer.echo(night_text(result) + records_text(result))


def demo_command(
    out: str = typer.Option("demo", "--out", help="folder of the demo's store, databases and pictures"),
    k: int = typer.Option(40, "--k", min=1, help="items added per night"),
    workers: int = typer.Option(2, "--workers", min=1, help="Dask worker processes of the LocalCluster"),
) -> None:
    """Two nights of curation on digits (1,000 items, then 1,797): local Prefect, Dask, Zarr and MLflow."""
    from flows.demo import prepare_environment, run_demo

    with refusing():
        prepare_environment(out)  # before anything imports Prefect
    from flows.cli.render import night_text, records_text

    run_demo(out, k=k, workers=workers, echo=typer.echo, describe=night_text, links=records_text)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("curate")(curate_command)
    app.command("demo")(demo_command)
