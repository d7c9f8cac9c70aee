"""Commands that need only the core library: ``score`` and ``objectives`` (``select`` lives in :mod:`flows.cli.select`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.params import load_input, load_selection, parse_params

console = Console()


def objectives_cmd() -> None:
    """List the objectives and their properties (monotone, submodular, ...)."""
    from worth import objectives
    from worth.registry import lookup

    table = Table(title="worth objectives")
    for col in ("name", "monotone", "submodular", "weakly submodular", "parameters", "what"):
        table.add_column(col)
    for name, props in objectives().items():
        params = ", ".join(f"{k}={v}" for k, v in lookup(name).defaults.items()) or "-"
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        table.add_row(name, yes(props.monotone), yes(props.submodular), yes(props.weakly_submodular), params,
                      props.summary)
    console.print(table)


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
    app.command("score")(score_cmd)
