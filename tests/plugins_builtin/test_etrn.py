"""The etrn plugin and the ETRN command (Q9, RFC 1985): mail for an ETRN domain is held until
an allowed client asks for it, then sent to the domain's host; anyone else changes nothing."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

import mailmax.plugins.etrn as etrn
from mailmax.core.directory.api import Domain, DomainType
from mailmax.core.verdicts import Action
from mailmax.testing import PluginHarness, TestServer, make_session
from tests.fixtures.ports import free_port
from tests.fixtures.smtp_sink import SMTPSink

NAME = "mailmax.plugins.etrn"
BRANCH = Domain("branch.test", "/nonexistent", type=DomainType.ETRN)


def test_only_allowed_clients_of_etrn_domains_may_ask() -> None:
    """Q9: ETRN is allowed for an ETRN domain from an address in its clients, and refused
    for other addresses and for domains that are not ETRN domains."""
    harness = PluginHarness(etrn, {"clients": ["192.0.2.0/24", "2001:db8::1"]})

    def ask(peer: str, record: Domain | None = BRANCH) -> Action:
        verdict = harness.run(
            "mailmax_etrn", session=make_session(peer_ip=peer), domain="branch.test",
            domain_record=record,
        )  # fmt: skip
        return verdict.action

    assert ask("192.0.2.10") is Action.ACCEPT
    assert ask("2001:db8::1") is Action.ACCEPT
    assert ask("198.51.100.7") is Action.REJECT
    assert ask("192.0.2.10", Domain("branch.test", "/x")) is Action.REJECT
    assert ask("192.0.2.10", None) is Action.REJECT


def etrn_command(server: TestServer, node: str, source: str = "127.0.0.1") -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], source_address=(source, 0)) as client:
        client.ehlo("branch-server.test")
        code, text = client.docmd("ETRN", node)
        return code, text.decode()


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def held(server: TestServer) -> list[Path]:
    folder = server.data_dir / "hold" / "env"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def test_etrn_releases_held_mail_to_the_allowed_client_only(
    mailmax_server: Callable[..., TestServer], tmp_path: Path
) -> None:
    """Q9: mail for an ETRN domain waits in the hold directory (also across a restart); ETRN
    from another address gets 459 and changes nothing; ETRN from the allowed client gets 253
    and the mail goes to the domain's host; the replies follow RFC 1985."""
    port = free_port()
    server = mailmax_server(
        plugins=[NAME],
        settings={NAME: {"clients": ["127.0.0.1/32"]}},
        sections={"smtp": {"trusted_networks": ["127.0.0.1/32"]}},
    )
    server.cli("domain", "add", "branch.test", "--type", "etrn", "--delivery-host",
               f"127.0.0.1:{port}")  # fmt: skip
    time.sleep(1.2)  # the directory cache
    with server.smtp() as client:
        client.ehlo("client.test")
        assert "etrn" in client.esmtp_features
        message = b"Subject: x\r\n\r\nheld\r\n"
        client.sendmail("alice@example.test", ["a@branch.test", "b@branch.test"], message)
        client.sendmail("alice@example.test", ["c@branch.test"], message)
    wait_for(lambda: len(held(server)) == 2, "two held messages")
    queue_env = server.data_dir / "queue" / "env"
    wait_for(lambda: not list(queue_env.glob("*.json")), "the main queue to empty")
    assert "result=held" in server.log_text()
    listed = json.loads(server.cli("queue", "list", "--held", "--json").stdout)
    assert [row["state"] for row in listed] == ["held for ETRN", "held for ETRN"]

    server.stop()
    server.start()  # held mail survives a restart and is indexed again
    sink = SMTPSink(tmp_path / "branch", port, {})
    sink.start()
    try:
        code, text = etrn_command(server, "branch.test", source="127.0.0.2")
        assert code == 459 and "not allowed" in text
        time.sleep(0.5)
        assert sink.transactions() == [] and len(held(server)) == 2

        code, text = etrn_command(server, "branch.test")
        assert (code, text) == (253, "2.0.0 OK, 2 pending messages for node branch.test started")
        transactions = sink.wait_for(2)
        assert sorted(r for tx in transactions for r in tx["rcpts"]) == [
            "a@branch.test",
            "b@branch.test",
            "c@branch.test",
        ]
        wait_for(lambda: not held(server), "the hold directory to empty")
        assert etrn_command(server, "branch.test")[0] == 251
        assert etrn_command(server, "@branch.test")[0] == 250
        assert etrn_command(server, "#queue")[0] == 458
        assert etrn_command(server, "bad..domain")[0] == 501
        assert etrn_command(server, "")[0] == 501
        assert etrn_command(server, "example.test")[0] == 459  # not an ETRN domain
    finally:
        sink.stop()


def test_etrn_is_not_offered_without_the_plugin(mailmax_server: Callable[..., TestServer]) -> None:
    """Q9: without the etrn plugin EHLO does not list ETRN and the command is unknown."""
    server = mailmax_server()
    with server.smtp() as client:
        client.ehlo("client.test")
        assert "etrn" not in client.esmtp_features
        assert client.docmd("ETRN", "branch.test")[0] == 500
