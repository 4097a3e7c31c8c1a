"""The catchall and monitor plugins over real SMTP (A2)."""

from __future__ import annotations

import time

from mailmax.testing import TestServer
from tests.plugins_builtin.support import rcpt, refused, send


def test_catch_all_and_monitor_copies(mailmax_server) -> None:
    """A2: unknown names go to the catch-all account; the monitor account gets one copy of
    every message to the domain; both switch off per domain."""
    server: TestServer = mailmax_server()
    assert refused(server, "nobody@example.test")
    server.cli("domain", "edit", "example.test", "--catch-all", "postmaster", "--monitor", "bob")
    server.wait_for(lambda: rcpt(server, "nobody@example.test") == 250, what="catch-all")
    assert send(server, ["nobody@example.test", "alice@example.test"], subject="m1") == {}
    (caught,) = server.wait_for_mail("postmaster@example.test")
    assert b"Subject: m1" in caught
    server.wait_for_mail("alice@example.test")
    (copy,) = server.wait_for_mail("bob@example.test")  # one copy for the whole message
    time.sleep(0.5)
    assert len(server.messages("bob@example.test")) == 1 and b"Subject: m1" in copy

    # the server re-reads every override at once: once catchall's change shows, monitor's has
    server.cli("plugin", "disable", "monitor", "--domain", "example.test")
    server.cli("plugin", "disable", "catchall", "--domain", "example.test")
    server.wait_for(lambda: refused(server, "nobody@example.test"), what="catch-all off")
    assert send(server, ["alice@example.test"], subject="m2") == {}
    server.wait_for_mail("alice@example.test", 2)
    time.sleep(0.5)
    assert len(server.messages("bob@example.test")) == 1
