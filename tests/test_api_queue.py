"""The admin API on the queue: list, show, delete with domain administrators (M1, A13)."""

from __future__ import annotations

import smtplib

import pytest

from tests.api_support import ApiClient, admin_cli, api_server, wait_for  # noqa: F401
from tests.fixtures.server import DOMAIN

HELD = "held.test"


@pytest.fixture(scope="module")
def setup(api_server):  # noqa: F811
    """An ETRN domain (its mail waits in the hold directory; the etrn plugin switched on
    system-wide and the server reloaded through the API), a system and a domain token."""
    server = api_server
    admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
    admin_cli(server, "admin", "grant", f"alice@{DOMAIN}", "--domain", DOMAIN)
    system = admin_cli(server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "t")
    domain = admin_cli(server, "admin", "token", "create", f"alice@{DOMAIN}", "--name", "a")
    client = ApiClient(server)
    made = client.call("POST", "/api/v1/domains", system.strip(), {"name": HELD, "type": "etrn"})
    assert made.status == 201, made.raw
    switched = client.call("PUT", "/api/v1/plugins/etrn/enabled", system.strip(), {"enabled": True})
    assert switched.status == 200 and "next `mailmax reload`" in switched.body["message"]
    assert "etrn" in client.call("POST", "/api/v1/reload", system.strip()).body["plugins"]
    return {"client": client, "system": system.strip(), "domain": domain.strip(),
            "server": server}  # fmt: skip


def test_queue_through_the_api(setup):
    """A held message is listed and shown to a system administrator, invisible to an
    administrator of another domain, and deleted through the API."""
    client, system, domain, server = (setup[k] for k in ("client", "system", "domain", "server"))
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("x@example.org", [f"kim@{HELD}"], b"Subject: held\r\n\r\nwait\r\n")
    listed = wait_for(
        lambda: client.call("GET", "/api/v1/queue?held=true", system).body["items"],
        timeout=20, what="the held message",
    )  # fmt: skip
    (message,) = listed
    assert message["where"] == "hold" and message["recipients"][0]["address"] == f"kim@{HELD}"
    assert client.call("GET", "/api/v1/queue", domain).body["items"] == []
    queue_id = message["id"]
    shown = client.call("GET", f"/api/v1/queue/{queue_id}", system)
    assert shown.body["headers"]["Subject"] == "held"
    assert client.call("GET", f"/api/v1/queue/{queue_id}", domain).status == 404
    refused = client.call("POST", "/api/v1/queue/delete", domain, {"ids": [queue_id]})
    assert refused.status == 404
    assert client.call("POST", "/api/v1/queue/flush", domain).status == 403
    assert client.call("POST", "/api/v1/queue/retry", domain, {"domain": HELD}).status == 403
    bad = client.call("POST", "/api/v1/queue/delete", system, {"ids": ["../etc"]})
    assert bad.status == 422 and "not a queue id" in bad.body["error"]["message"]
    deleted = client.call("POST", "/api/v1/queue/delete", system, {"ids": [queue_id]})
    assert deleted.status == 200 and deleted.body["ids"] == [queue_id], deleted.raw
    assert client.call("GET", "/api/v1/queue", system).body["total"] == 0
    flushed = client.call("POST", "/api/v1/queue/flush", system)
    assert flushed.status == 200 and flushed.body["ids"] == []


def test_bans_through_the_api(setup):
    """A ban added through the API refuses the sender over SMTP; a domain administrator bans
    senders for their domain only."""
    client, system, domain, server = (setup[k] for k in ("client", "system", "domain", "server"))
    added = client.call("POST", "/api/v1/bans", domain,
                        {"pattern": "spam@bad.example", "domain": DOMAIN, "expires": "1h",
                         "reason": "test"})  # fmt: skip
    assert added.status == 201 and added.body["where"] == f"domain {DOMAIN}", added.raw
    assert client.call("POST", "/api/v1/bans", domain, {"pattern": "192.0.2.9"}).status == 403
    assert client.call("POST", "/api/v1/bans", domain,
                       {"pattern": "x@y.example", "domain": HELD}).status == 403  # fmt: skip
    bad = client.call("POST", "/api/v1/bans", system, {"pattern": "x@y.example", "expires": "soon"})
    assert bad.status == 422 and bad.body["error"]["message"].startswith("expires 'soon'")
    assert [b["pattern"] for b in client.call("GET", "/api/v1/bans", domain).body] == [
        "spam@bad.example"
    ]

    def refused() -> bool:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("spam@bad.example")
            code, _ = smtp.rcpt(f"bob@{DOMAIN}")
            return code >= 500

    wait_for(refused, what="the ban to hold")
    lifted = client.call("DELETE", f"/api/v1/bans?pattern=spam@bad.example&domain={DOMAIN}", domain)
    assert lifted.status == 200
    again = client.call("DELETE", f"/api/v1/bans?pattern=spam@bad.example&domain={DOMAIN}", domain)
    assert again.status == 404
