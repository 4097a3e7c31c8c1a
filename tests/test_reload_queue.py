"""A reload's new ``[queue]`` settings reach the running queue runner and its outbound side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core import config
from mailmax.core.hooks import PluginSet
from mailmax.core.verdicts import tempfail
from tests.test_queue_support import parse_dsn, plugin, running
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the spool and the runner."""
    yield from running_reactor()


def test_reconfigure_applies_the_retry_schedule_and_outbound_limits(
    tmp_path: Path, reactor_thread: ReactorThread
) -> None:
    """A runner started with many retries, reconfigured to one retry and no soft-error
    re-sends, bounces a message that keeps failing after 2 attempts; the outbound session
    limits, timeouts and HELO name are the new ones."""
    queue = running(reactor_thread, tmp_path, max_retries=1000, soft_max_resends=30)
    try:
        data = queue.settings.model_dump(exclude={"source"})
        data["queue"].update(
            max_retries=1,
            soft_max_resends=0,
            max_sessions=3,
            max_per_destination=2,
            smtp_timeout=42.0,
            dns_timeout=7.0,
            helo_name="out.example.com",
        )
        new = config.parse(data)
        reactor_thread.call(queue.runner.reconfigure, new)

        def hold(mailbox: str):
            return tempfail("held", 451, "4.2.1") if mailbox.startswith("bob") else None

        queue.plugin_set = PluginSet([plugin("hold", mailmax_deliver=hold)])
        queue.submit(["bob@example.com"])
        (dsn,) = queue.wait_mail("alice@example.com")
        _, (bob,) = parse_dsn(dsn)
        assert bob["Status"] == "4.4.7" and "after 2 attempts" in bob["Diagnostic-Code"]

        outbound = queue.runner.outbound
        assert (outbound.pool.max_sessions, outbound.pool.max_per_destination) == (3, 2)
        assert outbound.queue.smtp_timeout == 42.0 and outbound.resolver.timeout == 7.0
        assert outbound.helo_name == "out.example.com"
        queue.wait_queue_empty()
    finally:
        queue.stop()
