"""Test support for outbound delivery: test zones, a queue harness that delivers to loopback.

Test modules define their ``dns`` and ``outbound`` fixtures with :func:`outbound_dns` and
:func:`outbound_harnesses`.

The queue runner runs in process on a private reactor (``tests.test_queue_support``); the DNS
server (``tests.fixtures.dns``) and the receiving SMTP servers (``tests.fixtures.smtp_sink``)
are real servers in subprocesses on 127.0.0.1 (and 127.0.0.2, ::1 where a test needs a
second address). Every remote server listens on the same port, ``[queue] remote_port``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailmax.core.hooks import PluginSet
from mailmax.core.outbound.route import Route
from tests.fixtures.dns import dns_server
from tests.fixtures.ports import free_port
from tests.test_queue_support import QueueHarness, plugin
from tests.test_spool_reactor import ReactorThread

#: The harness's own host name (its MX name in the zones below).
OUR_NAME = "mx.example.com"

ZONES: dict[str, dict[str, list[tuple[Any, ...]]]] = {
    "example.org": {
        "example.org": [("MX", 10, "mx.example.org")],
        "mx.example.org": [("A", "127.0.0.1")],
    },
    "pref.test": {
        "pref.test": [("MX", 20, "mx2.pref.test"), ("MX", 10, "mx1.pref.test")],
        "mx1.pref.test": [("A", "127.0.0.2")],
        "mx2.pref.test": [("A", "127.0.0.1")],
    },
    "implicit.test": {"implicit.test": [("A", "127.0.0.1")]},
    "nullmx.test": {"nullmx.test": [("MX", 0, "")]},
    "v6.test": {"v6.test": [("MX", 10, "mx.v6.test")], "mx.v6.test": [("AAAA", "::1")]},
    "backup.test": {
        "backup.test": [
            ("MX", 10, "primary.backup.test"),
            ("MX", 20, OUR_NAME),
            ("MX", 30, "tertiary.backup.test"),
        ],
        "primary.backup.test": [("A", "127.0.0.2")],
        "tertiary.backup.test": [("A", "127.0.0.1")],
    },
    "loop.test": {"loop.test": [("MX", 10, OUR_NAME), ("MX", 20, "mx.example.org")]},
}


def expected_message(sender: str = "alice@example.com", body: bytes = b"Hello\r\n") -> bytes:
    """The message ``QueueHarness.submit`` queues (one Received header)."""
    return (
        b"Received: from hop0.example.org by mx.example.com; id 0\r\n"
        + f"From: {sender}\r\nSubject: test\r\n\r\n".encode()
        + body
    )


def route_plugin(choose: Callable[..., Route | None]) -> PluginSet:
    """A plugin set whose only plugin answers ``mailmax_route`` with ``choose``."""
    return PluginSet([plugin("route", mailmax_route=choose)])


class Outbound:
    """Starts queue harnesses that deliver through the test DNS server to ``port``."""

    def __init__(self, tmp_path: Path, rt: ReactorThread, dns: tuple[str, int]) -> None:
        self.tmp_path = tmp_path
        self.rt = rt
        self.dns = dns
        self.port = free_port()
        self.harnesses: list[QueueHarness] = []

    def queue(self, start: bool = True, **settings: Any) -> QueueHarness:
        """A harness (started unless told not to) with fast outbound timeouts."""
        values = {
            "dns_servers": [f"{self.dns[0]}:{self.dns[1]}"],
            "remote_port": self.port,
            "hold_dir": str(self.tmp_path / "hold"),
            "dns_timeout": 3.0,
            "connect_timeout": 3.0,
            "smtp_timeout": 5.0,
            "reuse_seconds": 0.5,
            **settings,
        }
        harness = QueueHarness(self.tmp_path, self.rt, **values)
        self.harnesses.append(harness)
        if start:
            harness.start()
        return harness

    def close(self) -> None:
        for harness in self.harnesses:
            harness.stop()


def outbound_dns() -> Iterator[tuple[str, int]]:
    """Body of a module-scoped ``dns`` fixture: the test DNS server with :data:`ZONES`."""
    with dns_server(ZONES) as address:
        yield address


def outbound_harnesses(tmp_path: Path, dns: tuple[str, int]) -> Iterator[Outbound]:
    """Body of an ``outbound`` fixture: harnesses on a private reactor, stopped afterwards."""
    rt = ReactorThread()
    helper = Outbound(tmp_path, rt, dns)
    try:
        yield helper
    finally:
        try:
            helper.close()
        finally:
            rt.stop()
