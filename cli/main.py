"""The ``worth`` console script: one Typer app, each command group registered here explicitly."""

from __future__ import annotations

import typer

from cli import core, store, study

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Appraise training data and select the subsets worth training on.",
)
for group in (core, store, study):
    group.register(app)


def main() -> None:
    """Entry point of the ``worth`` console script."""
    app()


if __name__ == "__main__":
    main()
