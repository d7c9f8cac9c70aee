"""The quiet terminal (``flows.cli.main.quiet_terminal``): library chatter off, real warnings kept."""

from __future__ import annotations

import warnings

import pytest

from flows.cli.main import QUIET_ENV, quiet_terminal

# distributed.node's own words when a second cluster finds the scheduler's HTTP port taken
PORT_TAKEN = "Port 8787 is already in use.\nPerhaps you already have a cluster running?\nHosting the HTTP server on port 38321 instead"


@pytest.mark.parametrize("verbose, shown", [(False, 0), (True, 1)])
def test_a_taken_dashboard_port_is_not_the_users_business_unless_verbose(monkeypatch, verbose, shown):
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_terminal(verbose)
        warnings.warn(PORT_TAKEN, UserWarning)
        warnings.warn("a store chunk is damaged", UserWarning)  # any other warning still reaches the user
    messages = [str(w.message) for w in seen]
    assert messages.count(PORT_TAKEN) == shown and "a store chunk is damaged" in messages
    import os

    assert all((os.environ.get(name) == value) != verbose for name, value in QUIET_ENV.items())
