"""A Dask scheduler address nothing answers at is refused in seconds, before any server or flow starts
(issue 21 §1): Dask's client waited 30 s and failed mid-launch with a traceback, exit 1."""

from __future__ import annotations

import socket
import time

import pytest

from infra.dask import check_scheduler, local_spec, scheduler_spec
from infra.processes import free_ports


def test_a_dead_scheduler_is_refused_in_seconds():
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=rf"scheduler='{address}': no Dask scheduler answers there .*leave "
                       "--scheduler out"):
        check_scheduler(scheduler_spec(address))
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("address", ["nonsense", "tcp://127.0.0.1", "http://127.0.0.1:8786", "tcp://:8786"])
def test_what_is_not_a_scheduler_address_is_refused(address):
    with pytest.raises(ValueError, match="is not a Dask scheduler address: give tcp://HOST:PORT"):
        check_scheduler(scheduler_spec(address))


def test_a_listening_scheduler_port_and_local_clusters_pass():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        for address in (f"tcp://127.0.0.1:{port}", f"127.0.0.1:{port}"):
            assert check_scheduler(scheduler_spec(address)) is None
    assert check_scheduler(local_spec(1)) is None and check_scheduler(None) is None
