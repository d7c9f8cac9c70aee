"""The ``study`` command: the appraisal study on an embedding store, tracked in MLflow (:mod:`flows.study`)."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.params import parse_params


def study_command(
    store: str = typer.Option(..., "--store", "-s", help="a complete, labelled embedding store (from `worth embed`)"),
    config: Optional[str] = typer.Option(None, "--config", "-c",
                                         help="a study.yaml (see study.yaml, study-quick.yaml)"),
    quick: bool = typer.Option(False, "--quick", help="the quick preset: a few minutes on digits"),
    holdout_fraction: Optional[float] = typer.Option(
        None, "--holdout-fraction", help="share of each class held out when the store has no test split "
        "(default: the config's, 0.2); recorded with the store on first use"),
    runner: str = typer.Option("dask", "--runner", help="dask (a LocalCluster, or --scheduler), threads (Prefect, "
                               "tasks in this process), or inline (no Prefect)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Dask worker processes (default: one per "
                                          "core); threads: subsets at once (default 1)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of a running Dask scheduler"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                                               "MLFLOW_TRACKING_URI, else <store>.mlflow/mlflow.db)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (default "
                                             "worth-study-<store name>)"),
    artifact_location: Optional[str] = typer.Option(None, "--artifact-location",
                                                    help="artifact root of a new experiment (default beside the "
                                                    "SQLite tracking file)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder of report.md and the figures (default "
                                      "<store>.study/<study key>)"),
    storage_option: Optional[list[str]] = typer.Option(None, "--storage-option", help="fsspec option KEY=VALUE"),
) -> None:
    """Appraise a pool: select subsets, score them with every objective, train and evaluate each, report which
    objective predicts held-out accuracy. Every subset is an MLflow run; a rerun resumes where a run stopped."""
    from pydantic import ValidationError

    from flows.study import StudyOptions, run_study
    from infra.dask import launch_target

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    if config and quick:
        fail("give --config FILE or --quick, not both.")
    try:
        target = launch_target(runner, workers=workers, scheduler=scheduler)
        options = StudyOptions(store=store, config=config, quick=quick or not config,
                               holdout_fraction=holdout_fraction, tracking_uri=tracking_uri, experiment=experiment,
                               artifact_location=artifact_location, out_dir=out,
                               storage_options=parse_params(storage_option, "--storage-option"))
    except (ValueError, ValidationError) as exc:
        fail(str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else exc.errors()[0]["msg"])

    def line(done: int, total: int, name: str) -> None:
        typer.echo(f"[{done}/{total}] {name}")

    try:
        result = run_study(options, **target, on_result=line)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc).splitlines()[0])
    except RuntimeError as exc:  # some subsets failed: the others are logged, a rerun retries the failed ones
        typer.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{result['subsets']} subsets: {result['trained']} trained, {result['reused']} reused from earlier "
               f"runs, in {result['seconds']:.1f} s")
    typer.echo(f"report: {result['report']}")
    typer.echo(f"MLflow: experiment {result['experiment']!r} (id {result['experiment_id']}), parent run "
               f"{result['parent_run_id']}")
    typer.echo(f"open the UI: {result['ui']}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("study")(study_command)
