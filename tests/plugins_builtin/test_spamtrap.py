"""The spamtrap plugin over real SMTP (A5, P10)."""

from __future__ import annotations

import json
import time

from mailmax.testing import TestServer
from tests.plugins_builtin.support import send


def test_mail_to_a_spam_trap_is_accepted_not_stored_and_recorded(mailmax_server) -> None:
    """A5: the sender sees a normal 250; nothing is stored; the event names the sender."""
    server: TestServer = mailmax_server()
    server.cli("user", "add", "trap@example.test", "--type", "spamtrap", "--password", "x" * 16)
    assert send(server, ["trap@example.test", "alice@example.test"], sender="spam@bad.test") == {}
    server.wait_for_mail("alice@example.test")
    events = server.data_dir / "events" / "spamtrap.jsonl"
    server.wait_for(events.exists, what="spam-trap event")
    (event,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert event["sender"] == "spam@bad.test" and event["trap"] == "trap@example.test"
    time.sleep(0.3)
    assert server.messages("trap@example.test") == []
