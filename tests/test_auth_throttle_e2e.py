"""Failed-login throttling of a running server over SMTP AUTH, POP3 and IMAP (A6): nobody can
lock a user out from another address, unknown and existing accounts get the same answers at
the same pace, and ``mailmax auth blocked`` / ``unblock`` act on the running server."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable

import pytest

from tests.fixtures.server import DOMAIN, USERS, MailMaxServer, write_config

ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"
AUTH = {
    "failure_delay": 0.3,
    "max_failure_delay": 0.6,
    "block_after": 3,
    "ip_block_after": 100,
    "account_delay_after": 3,
    "block_minutes": 10.0,
}
PLAIN = {"allow_plaintext_auth": True}


@pytest.fixture
def server(mailmax_factory: Callable[..., MailMaxServer]) -> MailMaxServer:
    """A server whose limits a test reaches in a few attempts, with logins without TLS."""
    return mailmax_factory(auth=AUTH, smtp=PLAIN, pop3=PLAIN, imap=PLAIN)


def _connect(server: MailMaxServer, service: str, source: str) -> tuple[socket.socket, object]:
    conn = socket.create_connection(
        ("127.0.0.1", server.ports[service]), timeout=20, source_address=(source, 0)
    )
    return conn, conn.makefile("rb")


def smtp_login(server: MailMaxServer, source: str, login: str, password: str) -> str:
    """AUTH PLAIN on the submission listener from ``source``; the reply line."""
    conn, reader = _connect(server, "submission", source)
    with conn:
        reader.readline()
        conn.sendall(b"EHLO client.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
        conn.sendall(f"AUTH PLAIN {token}\r\n".encode())
        return reader.readline().decode().rstrip()


def pop3_login(server: MailMaxServer, source: str, login: str, password: str) -> str:
    """USER/PASS from ``source``; the reply to PASS."""
    conn, reader = _connect(server, "pop3", source)
    with conn:
        reader.readline()
        conn.sendall(f"USER {login}\r\n".encode())
        reader.readline()
        conn.sendall(f"PASS {password}\r\n".encode())
        return reader.readline().decode().rstrip()


def imap_login(server: MailMaxServer, source: str, login: str, password: str) -> str:
    """LOGIN from ``source``; the tagged reply without the tag."""
    conn, reader = _connect(server, "imap", source)
    with conn:
        reader.readline()
        conn.sendall(f'a LOGIN "{login}" "{password}"\r\n'.encode())
        while not (line := reader.readline()).startswith(b"a "):
            assert line, "connection closed"
        return line[2:].decode().rstrip()


def ok(reply: str) -> bool:
    """True for a successful login reply of any of the three protocols."""
    return reply.startswith(("235 ", "+OK", "OK"))


def test_failures_from_one_address_never_lock_the_account_out_elsewhere(
    server: MailMaxServer,
) -> None:
    """A6: an attacker's wrong passwords block that attacker's address for that account;
    the owner still logs in from another address over SMTP AUTH, POP3 and IMAP."""
    attacker, owner = "127.0.0.2", "127.0.0.3"
    for _ in range(3):
        assert smtp_login(server, attacker, ALICE, "guess").startswith("535 5.7.8")
    for _ in range(3):
        assert imap_login(server, attacker, BOB, "guess").startswith("NO [AUTHENTICATIONFAILED]")
    blocked = smtp_login(server, attacker, ALICE, USERS["alice"])
    assert blocked.startswith("454 4.7.0") and "too many failed logins" in blocked
    assert pop3_login(server, attacker, BOB, USERS["bob"]).startswith("-ERR")
    assert imap_login(server, attacker, BOB, USERS["bob"]).startswith("NO [UNAVAILABLE]")
    # the attacker's address may still try other accounts
    assert ok(pop3_login(server, attacker, f"postmaster@{DOMAIN}", "postmastersecret"))
    for login in (smtp_login, pop3_login, imap_login):
        assert ok(login(server, owner, ALICE, USERS["alice"])), login.__name__
        assert ok(login(server, owner, BOB, USERS["bob"])), login.__name__


def _battery(server: MailMaxServer, source: str, account: str) -> list[tuple[str, float]]:
    seen = []
    for login in (imap_login, pop3_login, imap_login, smtp_login, imap_login):
        start = time.monotonic()
        reply = login(server, source, account, "not the password")
        seen.append((reply, time.monotonic() - start))
    return seen


def test_unknown_and_existing_accounts_get_the_same_answers_at_the_same_pace(
    mailmax_factory: Callable[..., MailMaxServer],
) -> None:
    """A6: the same battery of wrong logins on an unknown account and on an existing one,
    each from its own address: the same replies, each after the same delay (one longer
    than a password hash takes on a busy machine)."""
    auth = {**AUTH, "failure_delay": 1.0, "max_failure_delay": 1.0}
    server = mailmax_factory(auth=auth, smtp=PLAIN, pop3=PLAIN, imap=PLAIN)
    assert ok(imap_login(server, "127.0.0.9", BOB, USERS["bob"]))  # warm the hashing up
    unknown = _battery(server, "127.0.0.4", f"nobody@{DOMAIN}")
    existing = _battery(server, "127.0.0.5", BOB)
    assert [reply for reply, _ in unknown] == [reply for reply, _ in existing]
    assert unknown[-1][0].startswith("NO [UNAVAILABLE]")  # blocked after block_after
    for (_, t_unknown), (_, t_existing) in zip(unknown, existing, strict=True):
        assert t_unknown >= 1.0 and t_existing >= 1.0
        assert abs(t_unknown - t_existing) < 0.25, (unknown, existing)


def test_admin_lists_and_lifts_blocks_of_the_running_server(server: MailMaxServer) -> None:
    """A6: ``mailmax auth blocked`` shows the running server's blocks and account delays;
    ``mailmax auth unblock IP|ACCOUNT`` lifts them at once."""
    assert server.cli("auth", "blocked").stdout.strip() == "no failed-login blocks or delays"
    for _ in range(3):
        smtp_login(server, "127.0.0.6", ALICE, "guess")
    rows = json.loads(server.cli("auth", "blocked", "--json").stdout)
    assert [(r["kind"], r["ip"], r["account"]) for r in rows] == [
        ("account", "", ALICE),
        ("pair", "127.0.0.6", ALICE),
    ]
    assert rows[1]["failures"] == 3 and 590 < rows[1]["blocked_seconds"] <= 600
    assert rows[0]["delay_seconds"] == AUTH["failure_delay"]
    table = server.cli("auth", "blocked").stdout
    assert "127.0.0.6" in table and "BLOCKED (S)" in table
    assert smtp_login(server, "127.0.0.6", ALICE, USERS["alice"]).startswith("454 ")
    done = server.cli("auth", "unblock", "127.0.0.6")
    assert "forgot the failed logins of 127.0.0.6" in done.stdout
    assert ok(smtp_login(server, "127.0.0.6", ALICE, USERS["alice"]))
    assert server.cli("auth", "unblock", ALICE).returncode == 0
    assert server.cli("auth", "blocked", "--json").stdout.strip() == "[]"
    missing = server.cli("auth", "unblock", "192.0.2.77", check=False)
    assert missing.returncode == 1
    assert "no failed logins recorded for 192.0.2.77" in missing.stderr


def test_a_reload_applies_new_limits_to_the_running_server(server: MailMaxServer) -> None:
    """A6: ``[auth]`` changed in the config file applies at ``mailmax reload``."""
    server.sections["auth"] = {**AUTH, "block_after": 50}
    write_config(server.config_path, server.sections)
    server.cli("reload")
    for _ in range(4):
        assert smtp_login(server, "127.0.0.8", ALICE, "guess").startswith("535 ")
    assert ok(smtp_login(server, "127.0.0.8", ALICE, USERS["alice"]))
