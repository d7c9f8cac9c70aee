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


@pytest.mark.parametrize("verbose", [False, True])
def test_a_closing_clusters_nanny_chatter_is_off_unless_verbose(monkeypatch, verbose):
    import logging

    from flows.cli.main import QUIET_LOGGERS

    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    nanny = logging.getLogger("distributed.nanny")
    before = nanny.level
    nanny.setLevel(logging.NOTSET)
    try:
        quiet_terminal(verbose)
        # "Worker process still alive after 4.0 seconds, killing": a warning every close, left to Dask's own
        # configuration (the parent logger's level) only when verbose
        assert nanny.level == (logging.NOTSET if verbose else logging.ERROR)
        assert verbose or (not nanny.isEnabledFor(logging.WARNING) and nanny.isEnabledFor(logging.ERROR))
    finally:
        nanny.setLevel(before)
    assert QUIET_LOGGERS == {"distributed.nanny": logging.ERROR}
