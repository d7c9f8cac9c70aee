"""Commands that need only the core library: ``score`` and ``objectives`` (``select`` lives in :mod:`cli.select`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cli.params import load_matrix

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
    input: str = typer.Option(..., "--input", "-i", help="Embeddings: a .npy file, a .npz with X, or 'digits'."),
    indices: Path = typer.Option(..., help="A JSON selection (from `worth select --out`) or a .npy of indices."),
    objective: list[str] = typer.Option(["vendi"], help="Objective(s) to score (repeatable)."),
    normalize: bool = typer.Option(True, help="L2-normalise rows first."),
) -> None:
    """Score a given subset with one or more objectives (exact eigendecomposition)."""
    from worth import score

    X, _ = load_matrix(input)
    idx = json.loads(indices.read_text())["indices"] if indices.suffix == ".json" else np.load(indices)
    for name in objective:
        console.print(f"{name}: {score(X, np.asarray(idx, dtype=np.int64), name, normalize=normalize):.10g}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the ``worth`` app."""
    app.command("objectives")(objectives_cmd)
    app.command("score")(score_cmd)
