"""Helpers of the CLI catalogue: run ``worth`` in-process and read what a user sees."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli.main import app


class Outcome:
    """Exit code and the stderr lines of one ``worth`` invocation."""

    def __init__(self, result):
        self.code = result.exit_code
        self.stdout = result.stdout
        self.lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.exception = result.exception

    @property
    def line(self) -> str:
        return self.lines[0] if self.lines else ""


@pytest.fixture
def worth():
    """``worth(*args)`` → :class:`Outcome`; stdout and stderr kept apart."""
    runner = CliRunner()

    def run(*args):
        return Outcome(runner.invoke(app, [str(a) for a in args]))

    return run


@pytest.fixture
def one_line():
    """``one_line(outcome, code, *fragments)``: the catalogue's assertion."""
    return assert_one_line


def assert_one_line(out: Outcome, code: int, *fragments: str) -> None:
    """Exit ``code``, exactly one line on stderr, no traceback, every fragment in that line."""
    assert out.code == code, (out.code, out.lines, out.exception)
    assert len(out.lines) == 1, out.lines
    assert out.line.startswith("error: ") and "Traceback" not in out.line
    for fragment in fragments:
        assert fragment in out.line, (fragment, out.line)
