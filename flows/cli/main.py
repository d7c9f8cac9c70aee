"""The ``worth`` console script: one Typer app, each command group registered here explicitly.

Errors: every expected failure — bad input, a damaged or locked store, an unwritable path, a missing file —
ends as one line on stderr (``error: ...``, naming the problem and the fix) and a non-zero exit: 2 for usage
(a bad option value), 1 for a failure at run time. :class:`OneLineErrors` is the single place that does it, for
every command; ``worth --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click  # typer vendors click: its exceptions are not `click`'s
from typer.core import TyperGroup

from flows.cli import core, curate, select, services, store, study

EXPECTED = (ValueError, OSError, RuntimeError)
_debug = {"on": False}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(exc: BaseException) -> str:
    """The text of an error; for ``OSError(errno, text)`` without a file name, the text without "[Errno N]"."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None and len(exc.args) == 2:
        return exc.strerror
    return str(exc)


class OneLineErrors(TyperGroup):
    """The command group whose ``main`` turns expected exceptions into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _debug["on"] = False
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if _debug["on"]:
                raise
            hint = f"{exc.ctx.command_path} --help" if getattr(exc, "ctx", None) else "worth --help"
            named = isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
            fix = "" if named else f" (see `{hint}`)"  # a bad value's message names its fix; others get the help
            typer.echo(f"error: {_one_line(exc.format_message())}{fix}", err=True)
            rv = exc.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            rv = 1
        except EXPECTED as exc:
            if _debug["on"]:
                raise
            typer.echo(f"error: {_one_line(_message(exc)) or type(exc).__name__}", err=True)
            rv = 1
        except Exception as exc:  # a bug, not bad input: still one line, with the way to the traceback
            if _debug["on"]:
                raise
            typer.echo(f"error: internal error {type(exc).__name__}: {_one_line(exc)} (rerun with `worth --debug "
                       "...` for the traceback, and report it)", err=True)
            rv = 1
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help="Appraise training data and select the subsets worth training on.",
)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of one line.")):
    """Appraise training data and select the subsets worth training on."""
    _debug["on"] = debug


for group in (core, select, store, study, curate):
    group.register(app)
app.add_typer(services.app, name="services")


def main() -> None:
    """Entry point of the ``worth`` console script."""
    app()


if __name__ == "__main__":
    main()
