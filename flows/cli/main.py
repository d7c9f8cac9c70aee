"""The ``worth`` console script: one Typer app, each command group registered here explicitly.

Errors: every expected failure — bad input, a damaged or locked store, an unwritable path, a missing file —
ends as one line on stderr (``error: ...``, naming the problem and the fix) and a non-zero exit: 2 for usage
(a bad option value), 1 for a failure at run time. :class:`~flows.cli.errors.OneLineErrors` is the single place
that does it, for every command (:mod:`flows.cli.errors` says which is which); ``worth --debug COMMAND`` shows the
traceback instead. Options shared by several commands are defined once, in :mod:`flows.cli.options`.
"""

from __future__ import annotations

import typer

from flows.cli import core, curate, nights, select, services, store, study
from flows.cli.errors import OneLineErrors, set_debug

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help="Appraise training data and select the subsets worth training on.",
)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of one line.")):
    """Appraise training data and select the subsets worth training on."""
    set_debug(debug)


for group in (core, select, store, study, curate, nights):
    group.register(app)
app.add_typer(services.app, name="services")


def main() -> None:
    """Entry point of the ``worth`` console script."""
    app()


if __name__ == "__main__":
    main()
