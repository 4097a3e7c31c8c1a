"""Observability over the admin API, real HTTPS: the trace stream (server-sent events), the
activity counters, login records and /metrics, for system and domain administrators."""

from __future__ import annotations

import base64
import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import ApiClient, admin_cli, start_api_server
from tests.fixtures.server import DOMAIN, MailMaxServer

OTHER = "other.test"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server whose /metrics needs a token from loopback; a system administrator, an
    administrator of other.test, and a token each."""
    server = start_api_server(
        tmp_path_factory.mktemp("api-observe") / "data",
        admin={"metrics_networks": ["192.0.2.0/24"]},
        smtp={"allow_plaintext_auth": True},
    )
    try:
        admin_cli(server, "domain", "add", OTHER)
        admin_cli(server, "user", "add", f"carol@{OTHER}", "--password", "carol long secret")
        admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
        admin_cli(server, "admin", "grant", f"carol@{OTHER}", "--domain", OTHER)
        system = admin_cli(
            server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "s"
        )
        domain = admin_cli(server, "admin", "token", "create", f"carol@{OTHER}", "--name", "c")
        yield {
            "server": server,
            "client": ApiClient(server),
            "system": system.strip(),
            "domain": domain.strip(),
        }
    finally:
        try:
            server.stop(timeout=15)
        except Exception:
            server.kill()


class EventStream:
    """A server-sent events stream of the API, read by a thread."""

    def __init__(self, client: ApiClient, path: str, token: str) -> None:
        self.connection = http.client.HTTPSConnection(
            "localhost", client.server.ports["admin"], context=client.context, timeout=30
        )
        self.connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("content-type") == "text/event-stream"
        assert self.response.readline() == b": tracing\n"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                if raw.startswith(b"data: "):
                    self.events.put(json.loads(raw[6:]))
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the test closed the stream

    def until(self, needle: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The events up to and including the first whose text contains ``needle``."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if needle in event["text"]:
                return seen

    def close(self) -> None:
        """End the stream (waking the reading thread at once)."""
        sock = self.connection.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.reader.join(10)
        self.connection.close()


def send(server: MailMaxServer, recipient: str, auth: bool = False) -> None:
    with server.smtp() as client:
        client.ehlo("client.example.net")
        if auth:
            client.user, client.password = f"alice@{DOMAIN}", "alicesecret"
            client.auth("PLAIN", client.auth_plain)
        client.sendmail(f"alice@{DOMAIN}", [recipient], b"Subject: hi\r\n\r\nhello\r\n")


def test_trace_stream_for_system_and_domain_administrators(setup):
    """L3, A13: the SSE trace shows a session's commands, never its AUTH payload; a domain
    administrator sees only the events of their domain."""
    client, server = setup["client"], setup["server"]
    everything = EventStream(client, "/api/v1/trace?service=smtp,queue", setup["system"])
    mine = EventStream(client, "/api/v1/trace?category=commands,deliveries,logins", setup["domain"])
    try:
        send(server, f"bob@{DOMAIN}", auth=True)
        send(server, f"carol@{OTHER}")
        seen = everything.until(f"to carol@{OTHER}: delivered")
        theirs = mine.until(f"to carol@{OTHER}: delivered")
    finally:
        everything.close()
        mine.close()
    texts = [event["text"] for event in seen]
    assert "AUTH PLAIN ***" in texts
    assert any(f"bob@{DOMAIN}" in text for text in texts)
    secret = base64.b64encode(f"\0alice@{DOMAIN}\0alicesecret".encode()).decode()
    assert not any(secret in text or "alicesecret" in text for text in texts)
    assert all(OTHER in event["domains"] for event in theirs), theirs
    assert not any(f"bob@{DOMAIN}" in event["text"] for event in theirs)
    assert any(event["service"] == "smtp" and event["text"] == "data" for event in theirs)


def test_api_requests_are_admin_events(setup):
    """L2: the admin service's requests are events (only a system administrator sees them)."""
    client = setup["client"]
    stream = EventStream(client, "/api/v1/trace?service=admin", setup["system"])
    try:
        client.call("GET", "/api/v1/whoami", setup["domain"])
        event = stream.until("/api/v1/whoami")[-1]
    finally:
        stream.close()
    assert event["text"] == "GET /api/v1/whoami 200" and event["ip"] == "127.0.0.1"


def test_bad_trace_request_and_no_token(setup):
    client = setup["client"]
    answer = client.call("GET", "/api/v1/trace?service=gopher", setup["system"])
    assert answer.status == 422 and "unknown service 'gopher'" in answer.body["error"]["message"]
    assert client.call("GET", "/api/v1/trace").status == 401


def test_stats_per_service_and_per_domain(setup):
    """L4: a system administrator gets every service; a domain administrator their domain."""
    client = setup["client"]
    system = client.call("GET", "/api/v1/stats", setup["system"])
    assert system.status == 200
    assert system.body["smtp"]["messages"]["hour"] >= 2
    assert not any(name.startswith("@") for name in system.body)
    domain = client.call("GET", "/api/v1/stats", setup["domain"])
    assert list(domain.body) == [OTHER]
    assert domain.body[OTHER]["messages"] == {"hour": 1, "12h": 1, "24h": 1, "week": 1}
    assert client.call("GET", "/api/v1/stats", "mmx_000000000000_wrong").status == 401


def test_login_records(setup):
    """L3: the recorded logins; a domain administrator only of their domain's users."""
    client = setup["client"]
    answer = client.call("GET", f"/api/v1/users/alice@{DOMAIN}/logins", setup["system"])
    assert answer.status == 200
    assert [(r["service"], r["ip"]) for r in answer.body] == [("smtp", "127.0.0.1")]
    refused = client.call("GET", f"/api/v1/users/alice@{DOMAIN}/logins", setup["domain"])
    assert refused.status == 403
    own = client.call("GET", f"/api/v1/users/carol@{OTHER}/logins", setup["domain"])
    assert own.status == 200 and own.body == []
    missing = client.call("GET", f"/api/v1/users/nobody@{OTHER}/logins", setup["domain"])
    assert missing.status == 404


def test_metrics_need_a_system_token_outside_metrics_networks(setup):
    """L4: /metrics parses with prometheus_client; outside metrics_networks only a system
    administrator's token opens it, never a domain administrator's."""
    client = setup["client"]
    assert client.call("GET", "/metrics").status == 401
    assert client.call("GET", "/metrics", setup["domain"]).status == 403
    answer = client.call("GET", "/metrics", setup["system"])
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(answer.raw.decode())}
    assert {"mailmax_messages", "mailmax_sessions_open", "mailmax_queue_messages",
            "mailmax_spool_commit_seconds", "mailmax_deliveries",
            "mailmax_plugin_verdicts"} <= set(families)  # fmt: skip
    openapi = client.call("GET", "/api/openapi.json").body
    for path in ("/api/v1/trace", "/api/v1/stats", "/api/v1/users/{address}/logins", "/metrics"):
        assert path in openapi["paths"]
