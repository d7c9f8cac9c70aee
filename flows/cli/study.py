"""The ``study`` command: the appraisal study on an embedding store, tracked in MLflow (:mod:`flows.study`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import typer

from flows.cli.errors import bad_input, refusing
from flows.cli.options import (
    launch, runner_option, scheduler_option, storage_option_option, store_option, store_ref, workers_option,
)


@contextmanager
def runs_progress() -> Iterator[Callable[..., None]]:
    """One progress line for each phase of the study (``paths``, ``fills``, ``scores``, then ``runs``): on a
    terminal a bar (done / total, elapsed, an estimate of what is left), elsewhere (a log file, CI) a line at
    every tenth of a phase, so a log stays short. Called as ``(done, total, name, phase)``."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from flows.cli.core import console

    if not console.is_terminal:
        shown: dict[str, int] = {}

        def line(done: int, total: int, name: str, phase: str = "runs") -> None:
            step = (10 * done) // max(1, total)
            if step > shown.get(phase, -1) or done == total:
                shown[phase] = step
                pct = 100 * done / total if total else 100
                typer.echo(f"{phase} {done:,}/{total:,} ({pct:.0f} %), last: {name}")

        yield line
        return
    with Progress(TextColumn("[bold]{task.fields[phase]:<6}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.description}"),
                  console=console) as bar:
        tasks: dict[str, Any] = {}

        def update(done: int, total: int, name: str, phase: str = "runs") -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("", total=total, phase=phase)
            bar.update(tasks[phase], completed=done, total=total, description=name)

        yield update


def study_command(
    store: str = store_option("a complete, labelled embedding store (from `worth embed`)"),
    config: Optional[str] = typer.Option(None, "--config", "-c",
                                         help="a study.yaml (see study.yaml, study-quick.yaml)"),
    quick: bool = typer.Option(False, "--quick", help="the quick preset: a few minutes on digits"),
    holdout_fraction: Optional[float] = typer.Option(
        None, "--holdout-fraction", help="share of each class held out when the store has no test split "
        "(default: the config's, 0.2); recorded with the store on first use"),
    runner: str = runner_option("tasks"),
    workers: Optional[int] = workers_option("subsets"),
    scheduler: Optional[str] = scheduler_option(),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: "
                                               "MLFLOW_TRACKING_URI, else mlflow.db in the folder holding the store)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (default "
                                             "worth-study-<store name>)"),
    artifact_location: Optional[str] = typer.Option(None, "--artifact-location",
                                                    help="artifact root of a new experiment (default beside the "
                                                    "SQLite tracking file)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder of report.md and the figures (default "
                                      "<store>.study/<study key>)"),
    storage_option: Optional[list[str]] = storage_option_option(),
) -> None:
    """Appraise a pool: select subsets, score them with every objective, train and evaluate each, report which
    objective predicts held-out accuracy. Every subset is an MLflow run; a rerun resumes where a run stopped."""
    from flows.study import StudyOptions, run_study

    if config and quick:
        raise bad_input("give --config FILE or --quick, not both.")
    target = launch(runner, workers, scheduler)
    ref = store_ref(store, storage_option)
    with refusing(loc=False):
        options = StudyOptions(store=ref.url, config=config, quick=quick or not config,
                               holdout_fraction=holdout_fraction, tracking_uri=tracking_uri, experiment=experiment,
                               artifact_location=artifact_location, out_dir=out,
                               storage_options=dict(ref.storage_options))

    # the study plans first (store, labels, config, held-out split): what it refuses there is bad input; subsets
    # that fail once it runs raise RuntimeError (exit 1: the others are logged, a rerun retries the failed ones)
    with refusing(ValueError, FileNotFoundError), runs_progress() as on_result:
        result = run_study(options, **target, on_result=on_result)
    typer.echo(f"{result['subsets']} subsets: {result['trained']} trained, {result['reused']} reused from earlier "
               f"runs, in {result['seconds']:.1f} s")
    typer.echo(f"report: {result['report']}")
    typer.echo(f"MLflow: experiment {result['experiment']!r} (id {result['experiment_id']}), parent run "
               f"{result['parent_run_id']}")
    typer.echo(f"open the UI: {result['ui']}")
    typer.echo(f"  then {result['experiment_url']} (each subset's accuracy beside its scores)")
    from flows.runtime import prefect_lines

    for line in prefect_lines(result):  # the flow run, reachable once this command (and its server) has ended
        typer.echo(line.strip())


def report_command(
    results: str = typer.Argument(..., help="a study's results.json (written beside its report.md)"),
    out: str = typer.Option(..., "--out", help="folder to write report.md, report.html and the figures into"),
    title: str = typer.Option("Appraisal study", "--title", help="the report's title"),
) -> None:
    """Write a finished study's report again from its results.json (tables, verdicts, figures): nothing is
    trained or logged."""
    from worth.appraisal import report_from_results

    with refusing(ValueError, FileNotFoundError, loc=False):
        done = report_from_results(results, out, title=title)
    typer.echo(f"report: {done['report']}")
    typer.echo(f"html:   {done['html']}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("study")(study_command)
    app.command("report")(report_command)
