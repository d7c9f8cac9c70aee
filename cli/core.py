"""Commands that need only the core library: ``select --input`` (one process, no Prefect), ``score``, ``objectives``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.params import load_input, load_matrix, load_selection, parse_params

console = Console()


def objectives_cmd() -> None:
    """List the objectives and their properties (monotone, submodular, ...)."""
    from worth import objectives
    from worth.objectives import _REGISTRY

    table = Table(title="worth objectives")
    for col in ("name", "monotone", "submodular", "weakly submodular", "parameters", "what"):
        table.add_column(col)
    for name, props in objectives().items():
        params = ", ".join(f"{k}={v}" for k, v in _REGISTRY[name].defaults.items()) or "-"
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        table.add_row(name, yes(props.monotone), yes(props.submodular), yes(props.weakly_submodular), params,
                      props.summary)
    console.print(table)


def select_cmd(
    input: str = typer.Option(..., "--input", "-i",
                              help="Embeddings: a Zarr embedding store, a .npy file, a .npz with X (and y), or 'digits'."),
    objective: str = typer.Option("vendi", help="Objective name (see `worth objectives`)."),
    k: int = typer.Option(..., "--k", "-k", help="Number of items to select."),
    optimizer: str = typer.Option("greedy", help="greedy, lazy or stochastic."),
    method: str = typer.Option("auto", help="Gain method: auto, oracle, secular, secular-portable, closed-form."),
    param: list[str] = typer.Option([], "--param", "-p", help="Objective parameter KEY=VALUE (repeatable)."),
    normalize: bool = typer.Option(True, help="L2-normalise rows first."),
    seed: Optional[int] = typer.Option(None, help="Seed of the stochastic optimiser."),
    force: bool = typer.Option(False, help="Allow lazy greedy on a non-submodular objective."),
    out: Optional[Path] = typer.Option(None, help="Write the selection as JSON here."),
    show: int = typer.Option(25, help="Rows of the pick table to print (0: none)."),
) -> None:
    """Greedily select K items maximising OBJECTIVE; print the picks, gains and values."""
    from worth import select

    X, _ = load_matrix(input)
    with Progress(TextColumn("[bold]selecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("select", total=k)
        try:
            sel = select(X, k, objective, optimizer, method, normalize=normalize, seed=seed, force=force,
                         progress=lambda step, total: bar.update(task, completed=step), **parse_params(param))
        except ValueError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
    idx, gains, values = (np.asarray(a) for a in (sel.indices, sel.gains, sel.values))
    if show:
        table = Table(title=f"{sel.objective} {sel.params} — {sel.optimizer}/{sel.method}, n={X.shape[0]}, m={X.shape[1]}")
        for col in ("step", "index", "gain", "value"):
            table.add_column(col, justify="right")
        for step in range(min(show, k)):
            table.add_row(str(step + 1), str(idx[step]), f"{gains[step]:.6g}", f"{values[step]:.6g}")
        if k > show:
            table.add_row("…", "…", "…", "…")
            table.add_row(str(k), str(idx[-1]), f"{gains[-1]:.6g}", f"{values[-1]:.6g}")
        console.print(table)
    console.print(
        f"selected {k} of {X.shape[0]}: {sel.objective} = {sel.value:.6g}; "
        f"{sel.timings['evaluations']} gain evaluations in {sel.timings['total']:.2f} s"
    )
    if out:
        out.write_text(json.dumps({
            "objective": sel.objective, "params": sel.params, "optimizer": sel.optimizer, "method": sel.method,
            "indices": idx.tolist(), "gains": gains.tolist(), "values": values.tolist(), "timings": sel.timings,
        }, indent=2))
        console.print(f"wrote {out}")


def score_cmd(
    input: str = typer.Option(..., "--input", "-i",
                              help="Embeddings: a Zarr embedding store, a .npy file, a .npz with X, or 'digits'."),
    indices: Path = typer.Option(..., help="A JSON selection (from `worth select --out`) or a .npy of row numbers."),
    objective: Optional[list[str]] = typer.Option(
        None, help="Objective(s) to score (repeatable; default: the selection's own, else vendi)."),
    param: list[str] = typer.Option([], "--param", "-p",
                                    help="Objective parameter KEY=VALUE (repeatable); overrides the selection's."),
    normalize: Optional[bool] = typer.Option(None, help="L2-normalise rows first (default: as the selection "
                                             "recorded, else yes)."),
) -> None:
    """Score a given subset with one or more objectives (exact eigendecomposition).

    A selection JSON brings its objective and parameters: scoring it again gives the value `select` reported.
    """
    from worth import objectives, score

    names = objectives()
    for name in objective or []:
        if name not in names:
            raise typer.BadParameter(f"{name!r} is not an objective; choose from {', '.join(names)}.",
                                     param_hint="--objective")
    overrides = parse_params(param)
    inputs = load_input(input)
    sel = load_selection(indices, inputs.X.shape[0])
    normalize = normalize if normalize is not None else sel.normalize if sel.normalize is not None else True
    for name in objective or [sel.objective or "vendi"]:
        if name not in names:
            raise typer.BadParameter(f"{indices} names objective {name!r}, which is not known; pass --objective.",
                                     param_hint="--indices")
        params = {**(sel.params or {} if name == sel.objective else {}), **overrides}
        try:
            value = score(inputs.X, sel.indices, name, normalize=normalize, labels=inputs.labels, **params)
        except ValueError as err:  # parameters the objective refuses: the library's message names the fix
            raise typer.BadParameter(str(err), param_hint="--param") from None
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        console.print(f"{name}{f' ({shown})' if shown else ''}: {value:.10g}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("objectives")(objectives_cmd)
    app.command("select")(select_cmd)
    app.command("score")(score_cmd)
