"""The one error path of the ``worth`` command: every failure ends as one line on stderr and an exit code.

Two kinds, two codes:

* **bad input — exit 2**: a value the user typed (an option, a file it names, a store that cannot serve the
  request) is refused before any work, with a message naming the argument and the fix. Commands raise
  :func:`bad_input` (or Click's :class:`~click.BadParameter` for one named option), or run their checks and
  planning inside :func:`refusing` so the library's own ``ValueError`` becomes one.
* **failure at run time — exit 1**: the run started and something went wrong (a lock held by another run, a
  conflict with another writer, failed jobs, an unwritable disk). Commands do *not* catch these: they reach
  :class:`OneLineErrors`, the command group's ``main``, which prints them.

``worth --debug COMMAND`` shows the traceback instead. Both ``worth`` and ``python -m flows.cli.services`` use
:class:`OneLineErrors`, so no command has a helper of its own that prints and exits.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from typer._click import exceptions as click  # typer vendors click: its exceptions are not `click`'s
from typer.core import TyperGroup

#: Exceptions that are expected at run time (exit 1, one line); anything else is a bug (exit 1, with the way to
#: the traceback).
EXPECTED = (ValueError, OSError, RuntimeError)
#: Exit codes: the library's refusals of what the user typed, and everything that fails once work has started.
BAD_INPUT, RUN_FAILED = 2, 1
_debug = {"on": False}


class BadInput(click.ClickException):
    """What the user typed is refused: one line ``error: MESSAGE``, exit 2 (the message names the fix)."""

    exit_code = BAD_INPUT


class RunFailed(click.ClickException):
    """A failure a command finds itself once it runs (nothing to report, a check that fails): exit 1, one line."""

    exit_code = RUN_FAILED


def _first_line(message: object) -> str:
    text = str(message).strip()
    return text.splitlines()[0] if text else type(message).__name__


def bad_input(message: object) -> BadInput:
    """The error to raise for refused input: its first line, as :class:`BadInput` (exit 2)."""
    return BadInput(_first_line(message))


def failed(message: object) -> RunFailed:
    """The error to raise for a failure at run time that is not an exception of the library: exit 1."""
    return RunFailed(_first_line(message))


def _pydantic_message(exc: Exception) -> str | None:
    errors = getattr(exc, "errors", None)
    if not callable(errors) or type(exc).__name__ != "ValidationError":
        return None
    first = errors()[0]
    where = ".".join(map(str, first.get("loc", ())))
    return first["msg"] if not where else f"{where}: {first['msg']}"


@contextlib.contextmanager
def refusing(*types: type[BaseException], loc: bool = True) -> Iterator[None]:
    """Inside the block, exceptions of ``types`` (default ``ValueError``, which includes pydantic's
    ``ValidationError``) are bad input: re-raised as :class:`BadInput` (exit 2), first line of their message.

    ``loc=False`` drops a pydantic error's field path (``holdout_fraction: ...`` → ``...``) where the message
    names the field already.
    """
    try:
        yield
    except (types or (ValueError,)) as exc:
        message = _pydantic_message(exc)
        if message is not None and not loc:
            message = exc.errors()[0]["msg"]
        raise bad_input(message if message is not None else exc) from None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(exc: BaseException) -> str:
    """The text of an error; for ``OSError(errno, text)`` without a file name, the text without "[Errno N]"."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None and len(exc.args) == 2:
        return exc.strerror
    return str(exc)


def set_debug(on: bool) -> None:
    """``--debug``: let errors raise with their traceback."""
    _debug["on"] = bool(on)


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
            # a refused value's message names its fix; other usage errors (a missing option ...) get the help
            named = isinstance(exc, (BadInput, RunFailed)) or (isinstance(exc, click.BadParameter)
                                                  and not isinstance(exc, click.MissingParameter))
            fix = "" if named else f" (see `{hint}`)"
            typer.echo(f"error: {_one_line(exc.format_message())}{fix}", err=True)
            rv = exc.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            rv = RUN_FAILED
        except EXPECTED as exc:
            if _debug["on"]:
                raise
            typer.echo(f"error: {_one_line(_message(exc)) or type(exc).__name__}", err=True)
            rv = RUN_FAILED
        except Exception as exc:  # a bug, not bad input: still one line, with the way to the traceback
            if _debug["on"]:
                raise
            typer.echo(f"error: internal error {type(exc).__name__}: {_one_line(exc)} (rerun with `worth --debug "
                       "...` for the traceback, and report it)", err=True)
            rv = RUN_FAILED
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code
