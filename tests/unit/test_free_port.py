"""The stack's free ports: never from the kernel's range for outgoing
connections, whose ports any process's next connection can take before the
server meant for one binds it."""

from __future__ import annotations

import socket

from libs.devstack.processes import _ephemeral_start, free_port


def test_free_ports_are_distinct_bindable_and_below_the_outgoing_range() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < _ephemeral_start() for p in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
