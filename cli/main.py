"""The ``worth`` console script: one Typer app, each command group registered here explicitly."""

from __future__ import annotations

import typer

from cli import core, curate, select, services, store

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Appraise training data and select the subsets worth training on.",
)
for group in (core, select, store, curate):
    group.register(app)
app.add_typer(services.app, name="services")


def main() -> None:
    """Entry point of the ``worth`` console script."""
    app()


if __name__ == "__main__":
    main()
