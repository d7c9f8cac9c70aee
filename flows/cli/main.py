"""The ``worth`` console script: one Typer app, each command group registered here explicitly.

Errors: every expected failure — bad input, a damaged or locked store, an unwritable path, a missing file —
ends as one line on stderr (``error: ...``, naming the problem and the fix) and a non-zero exit: 2 for usage
(a bad option value), 1 for a failure at run time. :class:`~flows.cli.errors.OneLineErrors` is the single place
that does it, for every command (:mod:`flows.cli.errors` says which is which); ``worth --debug COMMAND`` shows the
traceback instead. Options shared by several commands are defined once, in :mod:`flows.cli.options`.
"""

from __future__ import annotations

import logging
import os
import warnings

import typer

from flows.cli import core, curate, nights, select, services, store, study
from flows.cli.errors import OneLineErrors, set_debug

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help="Appraise training data and select the subsets worth training on.",
)


#: What ``--verbose`` leaves alone: the console handler of Prefect's logging (its INFO lines: temporary server,
#: "View at" links to a server that stops with the command, one line per task run, Dask's cluster chatter) and
#: MLflow's INFO lines. Only the terminal is quieted: Prefect's API handler still sends every log to the UI.
QUIET_ENV = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "MLFLOW_LOGGING_LEVEL": "WARNING"}
#: Loggers whose warnings are routine for a command's own cluster, kept to errors unless ``--verbose``.
QUIET_LOGGERS = {"distributed.nanny": logging.ERROR}


def quiet_terminal(verbose: bool) -> None:
    """Prefect, Dask and MLflow chatter off the terminal unless ``verbose`` (a value the user set wins); set
    before any of them is imported, and inherited by the workers this process starts."""
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
        # a second command beside a first finds the Dask scheduler's HTTP port (8787) taken and says so in a
        # four-line UserWarning; the cluster works on another loopback port, nothing for the user to do
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        # a LocalCluster closing at the end of a command: each nanny warns that its worker (torch's threads) is
        # "still alive after 4.0 seconds, killing", as it always is; Dask's configured loggers do not include it
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of one line."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's, Dask's and MLflow's log lines "
                                      "on the terminal (the Prefect UI has them either way).")):
    """Appraise training data and select the subsets worth training on."""
    set_debug(debug)
    quiet_terminal(verbose or debug)


for group in (core, select, store, study, curate, nights):
    group.register(app)
app.add_typer(services.app, name="services")


def main() -> None:
    """Entry point of the ``worth`` console script."""
    app()


if __name__ == "__main__":
    main()
