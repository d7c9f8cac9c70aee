"""Fixtures of the CLI catalogue: run ``worth`` in-process and read what a user sees (the helpers behind them:
:mod:`tests.helpers`)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from tests.helpers import Outcome, assert_one_line


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
