"""The bans plugin over real SMTP against a running server, managed with `mailmax ban`.

Clients connect from different loopback addresses (127.0.0.5, ...) to be told apart.
"""

from __future__ import annotations

import json
import smtplib

import pytest

from mailmax.testing import TestServer

BODY = "From: someone\r\nSubject: hi\r\n\r\nhello\r\n"


def client(server: TestServer, source: str = "127.0.0.1") -> smtplib.SMTP:
    """An SMTP client connected from ``source``."""
    smtp = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10, source_address=(source, 0))
    smtp.ehlo("client.test")
    return smtp


def mail_reply(server: TestServer, sender: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """The reply to MAIL FROM:<sender>."""
    with client(server, source) as smtp:
        return smtp.mail(sender)


def greeting(server: TestServer, source: str) -> tuple[int, str]:
    """The greeting code and text a client from ``source`` gets."""
    try:
        with client(server, source):
            return 220, ""
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code, exc.smtp_error.decode()


def bans(server: TestServer) -> list[dict]:
    """`mailmax ban list --json`."""
    return json.loads(server.cli("ban", "list", "--json").stdout)


@pytest.fixture
def server(mailmax_server, db_url: str) -> TestServer:
    """A server with the default plugins, its directory in SQLite or PostgreSQL."""
    return mailmax_server(sections={"server": {"database_url": db_url}})


def test_a_system_ban_from_the_cli_holds_without_a_reload_and_is_lifted(server) -> None:
    """`ban add` with a wildcard refuses the sender within seconds; `ban delete` lifts it."""
    assert mail_reply(server, "joe@mx.spam.example")[0] == 250
    out = json.loads(
        server.cli("ban", "add", "*.spam.example", "--reason", "junk", "--json").stdout
    )
    assert out["ok"] and out["changed"] and out["object"]["pattern"] == "*.spam.example"
    assert out["object"]["cause"] == "manual" and out["object"]["expires"] is None
    code, text = server.wait_for(
        lambda: (r := mail_reply(server, "joe@mx.spam.example"))[0] != 250 and r,
        what="the ban to hold",
    )
    assert (code, text[:5]) == (550, b"5.7.1")
    assert b"junk" not in text
    assert mail_reply(server, "joe@spam-free.example")[0] == 250
    [entry] = bans(server)
    assert (entry["kind"], entry["where"], entry["reason"]) == ("sender", "system", "junk")
    server.cli("ban", "delete", "*.spam.example")
    server.wait_for(lambda: mail_reply(server, "joe@mx.spam.example")[0] == 250, what="lifted")
    assert bans(server) == []
    assert "banned sender *.spam.example" in server.log_text()
    again = server.cli("ban", "delete", "*.spam.example", check=False)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("error: no ban on *.spam.example system-wide")
    bad = server.cli("ban", "add", "*@*", check=False)
    assert bad.returncode == 1 and "would ban every sender" in bad.stderr
    past = server.cli("ban", "add", "x.example", "--expires", "2020-01-01", check=False)
    assert past.returncode == 1 and "in the past" in past.stderr
    assert bans(server) == []


def test_a_domains_ban_refuses_only_its_recipients(server) -> None:
    """a sender banned for example.test still reaches other.test's users."""
    server.cli("domain", "add", "other.test")
    server.cli("user", "add", "carol@other.test", "--password", "carolsecret1")
    server.cli("ban", "add", "spammer@bad.example", "--domain", "example.test")

    def refused() -> dict:
        with client(server) as smtp:
            return smtp.sendmail(
                "spammer@bad.example", ["alice@example.test", "carol@other.test"], BODY
            )

    result = server.wait_for(refused, what="the domain's ban")
    assert list(result) == ["alice@example.test"]
    code, text = result["alice@example.test"]
    assert (code, text) == (
        550,
        b"5.7.1 Mail from <spammer@bad.example> is refused for example.test",
    )
    server.wait_for_mail("carol@other.test")
    # the same reply for an existing and an alias address: nothing tells which accounts exist
    server.cli("alias", "add", "sales@example.test", "alice@example.test")
    with client(server) as smtp:
        smtp.mail("spammer@bad.example")
        assert smtp.rcpt("alice@example.test")[1].replace(b"alice", b"") == smtp.rcpt(
            "sales@example.test"
        )[1].replace(b"sales", b"")
    [entry] = bans(server)
    assert entry["where"] == "domain example.test"


def test_a_banned_client_gets_554_at_connect(server) -> None:
    """an IP ban refuses the greeting with 554 5.7.1; other clients are served."""
    server.cli("ban", "add", "127.0.0.5", "--expires", "1h")
    code, text = server.wait_for(
        lambda: (g := greeting(server, "127.0.0.5"))[0] != 220 and g, what="the IP ban"
    )
    assert code == 554 and text.startswith("5.7.1") and "127.0.0.5" in text
    assert greeting(server, "127.0.0.6")[0] == 220
    [entry] = bans(server)
    assert entry["kind"] == "client" and entry["expires"] - entry["added"] == pytest.approx(3600)


def test_a_spam_trap_hit_bans_the_client_ip_for_a_day(server) -> None:
    """the trap is answered like any mailbox; the client's IP is banned, shown with its
    cause, and the admin can lift it."""
    server.cli("user", "add", "trap@example.test", "--type", "spamtrap", "--password", "x" * 16)
    with client(server, "127.0.0.7") as smtp:
        assert (
            smtp.sendmail("spam@bad.test", ["trap@example.test", "alice@example.test"], BODY) == {}
        )
        assert smtp.mail("spam@bad.test")[0] == 550  # banned from now on
    assert greeting(server, "127.0.0.7")[0] == 554
    assert greeting(server, "127.0.0.8")[0] == 220
    [entry] = bans(server)
    assert (entry["pattern"], entry["cause"]) == ("127.0.0.7", "spamtrap")
    assert "trap@example.test" in entry["reason"] and "spam@bad.test" in entry["reason"]
    assert entry["expires"] - entry["added"] == pytest.approx(86400)
    # the sender was not banned (envelope senders are easily forged)
    assert mail_reply(server, "spam@bad.test", "127.0.0.8")[0] == 250
    server.cli("ban", "delete", "127.0.0.7")
    server.wait_for(lambda: greeting(server, "127.0.0.7")[0] == 220, what="the lifted ban")


def test_spam_trap_settings_change_with_a_reload(mailmax_server) -> None:
    """`plugin set` + `reload`: the next trap hit bans the sender too, for five minutes."""
    server = mailmax_server()
    server.cli("user", "add", "trap@example.test", "--type", "spamtrap", "--password", "x" * 16)
    server.cli("plugin", "set", "bans", "spamtrap_ban_minutes=5", "spamtrap_ban_sender=true")
    assert server.reload().returncode == 0
    with client(server, "127.0.0.9") as smtp:
        assert smtp.sendmail("Spam@Bad.test", ["trap@example.test"], BODY) == {}
    entries = {entry["pattern"]: entry for entry in bans(server)}
    assert set(entries) == {"127.0.0.9", "spam@bad.test"}
    assert all(e["expires"] - e["added"] == pytest.approx(300) for e in entries.values())
    assert mail_reply(server, "spam@bad.test", "127.0.0.10")[0] == 550
