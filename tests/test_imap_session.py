"""IMAP sessions over real sockets: greeting, CAPABILITY, log-in, TLS, limits, LOGOUT (S3, A11).

The server is :class:`mailmax.core.imap.factory.IMAPFactory` in a subprocess with a real SQLite
directory and real Maildirs (see ``tests/test_imap_harness.py``).
"""

from __future__ import annotations

import base64
import imaplib
import time

import pytest

from tests.fixtures.ports import wait_until
from tests.test_imap_harness import IMAPWorld, world


@pytest.fixture
def imap(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "plain")


@pytest.fixture
def imap_strict(request: pytest.FixtureRequest) -> IMAPWorld:
    return world(request, "strict")


def test_greeting_and_capability(imap: IMAPWorld) -> None:
    """S3: the greeting carries the capabilities; CAPABILITY lists IMAP4rev1 and extensions."""
    raw = imap.raw()
    assert raw.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"MailMax IMAP4rev1 ready" in raw.greeting
    reply = raw.command(b"a1", b"CAPABILITY")
    caps = reply[0].split()[2:]
    for wanted in (
        b"IMAP4rev1",
        b"LITERAL+",
        b"IDLE",
        b"UIDPLUS",
        b"MOVE",
        b"UNSELECT",
        b"NAMESPACE",
        b"ID",
        b"ENABLE",
        b"SPECIAL-USE",
        b"QUOTA",
        b"STARTTLS",
        b"AUTH=PLAIN",
        b"APPENDLIMIT=1000000",
    ):
        assert wanted in caps
    assert reply[-1] == b"a1 OK Capability completed"
    raw.close()


def test_login_select_logout(imap: IMAPWorld) -> None:
    """S3, A11: LOGIN with user@domain, SELECT INBOX, LOGOUT says BYE then OK."""
    user = imap.new_user()
    client = imap.client()
    typ, data = client.login(user.address, user.password)
    assert typ == "OK" and b"Logged in" in data[0]
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"0"])
    typ, data = client.logout()
    assert typ == "BYE"


def test_login_forms_and_record(imap: IMAPWorld) -> None:
    """A11: bare names resolve in the listener's default domain; the log-in is recorded (S5)."""
    user = imap.new_user()
    for login in (user.name, f"{user.name}%example.test", f"example.test/{user.name}"):
        client = imap.client()
        assert client.login(login, user.password)[0] == "OK"
        client.logout()
    wait_until(lambda: imap.sql.last_login(user.address), 5, "login record")
    service, ip, _ = imap.sql.last_login(user.address)
    assert (service, ip) == ("imap", "127.0.0.1")


def test_login_recorded_while_the_session_stays(imap: IMAPWorld) -> None:
    """S5: the log-in of a session that stays connected is recorded a moment later (off the
    path of the commands that follow it); one that ends first is recorded when it ends."""
    user = imap.new_user()
    client = imap.client()
    assert client.login(user.address, user.password)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    wait_until(lambda: imap.sql.last_login(user.address), 5, "login record")
    client.logout()


def test_wrong_password_and_unknown_user_look_the_same(imap: IMAPWorld) -> None:
    """A6: a failed log-in says AUTHENTICATIONFAILED whatever the reason."""
    user = imap.new_user()
    answers = []
    for login, password in ((user.address, "wrong"), ("nobody@example.test", "x")):
        raw = imap.raw()
        reply = raw.command(b"a", b'LOGIN "%s" "%s"' % (login.encode(), password.encode()))
        answers.append(reply[-1])
        raw.close()
    assert answers == [b"a NO [AUTHENTICATIONFAILED] Authentication failed"] * 2


def test_authenticate_plain_with_and_without_initial_response(imap: IMAPWorld) -> None:
    """S3: AUTHENTICATE PLAIN with a continuation, and with SASL-IR; cancelling with '*'."""
    user = imap.new_user()
    token = base64.b64encode(f"\0{user.address}\0{user.password}".encode())
    raw = imap.raw()
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ "
    raw.send(token + b"\r\n")
    reply = raw.response(b"a")
    assert reply[-1].startswith(b"a OK [CAPABILITY IMAP4rev1")
    raw.close()
    raw = imap.raw()
    assert raw.command(b"b", b"AUTHENTICATE PLAIN " + token)[-1].startswith(b"b OK")
    raw.close()
    raw = imap.raw()
    raw.send(b"c AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ "
    raw.send(b"*\r\n")
    assert raw.response(b"c")[-1] == b"c BAD Authentication cancelled"
    raw.close()


def test_authenticate_as_someone_else_is_refused(imap: IMAPWorld) -> None:
    """A6: PLAIN with an authorization identity other than the user fails."""
    user = imap.new_user()
    token = base64.b64encode(f"admin@example.test\0{user.address}\0{user.password}".encode())
    raw = imap.raw()
    assert raw.command(b"a", b"AUTHENTICATE PLAIN " + token)[-1].startswith(
        b"a NO [AUTHORIZATIONFAILED]"
    )
    raw.close()


def test_commands_in_the_wrong_state(imap: IMAPWorld) -> None:
    """S3: selected-state commands need a mailbox, others need a log-in; unknown is BAD."""
    user = imap.new_user()
    raw = imap.raw()
    assert raw.command(b"a", b"SELECT INBOX")[-1] == b"a BAD Log in first"
    assert raw.command(b"b", b"FROBNICATE")[-1] == b"b BAD Unknown command"
    raw.login(user)
    assert raw.command(b"c", b"FETCH 1 FLAGS")[-1] == b"c BAD No mailbox selected"
    assert raw.command(b"d", b"LOGIN x y")[-1] == b"d BAD Already authenticated"
    assert raw.command(b"e", b"NOOP extra")[-1].startswith(b"e BAD")
    raw.close()


def test_id_namespace_enable(imap: IMAPWorld) -> None:
    """S3: ID (RFC 2971), NAMESPACE (RFC 2342), ENABLE (RFC 5161)."""
    user = imap.new_user()
    raw = imap.raw()
    reply = raw.command(b"a", b'ID ("name" "pytest" "version" "1")')
    assert reply[0] == b'* ID ("name" "MailMax" "vendor" "MailMax")'
    assert raw.command(b"b", b"ID NIL")[-1] == b"b OK ID completed"
    raw.login(user)
    assert raw.command(b"c", b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert raw.command(b"d", b"ENABLE CONDSTORE")[0] == b"* ENABLED"
    raw.close()


# ---------------------------------------------------------------------- TLS
def test_login_disabled_without_tls(imap_strict: IMAPWorld) -> None:
    """S3: without TLS, LOGINDISABLED is advertised, no AUTH=, and LOGIN is refused."""
    user = imap_strict.new_user()
    raw = imap_strict.raw()
    caps = raw.command(b"a", b"CAPABILITY")[0].split()
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps
    assert not any(c.startswith(b"AUTH=") for c in caps)
    reply = raw.command(b"b", b'LOGIN "%s" "%s"' % (user.address.encode(), user.password.encode()))
    assert reply[-1].startswith(b"b NO [PRIVACYREQUIRED]")
    assert raw.command(b"c", b"AUTHENTICATE PLAIN")[-1].startswith(b"c NO [PRIVACYREQUIRED]")
    raw.close()


def test_starttls_then_login(imap_strict: IMAPWorld) -> None:
    """S3: STARTTLS upgrades; then AUTH=PLAIN is offered and LOGIN works; no second STARTTLS."""
    user = imap_strict.new_user()
    client = imaplib.IMAP4("127.0.0.1", imap_strict.port, timeout=10)
    context = imap_strict.ssl_context()
    context.check_hostname = False
    assert client.starttls(context)[0] == "OK"
    assert "AUTH=PLAIN" in client.capabilities and "STARTTLS" not in client.capabilities
    assert client.login(user.address, user.password)[0] == "OK"
    with pytest.raises(imaplib.IMAP4.error):
        client._simple_command("STARTTLS")
    client.logout()


def test_implicit_tls_port(imap_strict: IMAPWorld) -> None:
    """S3: the imaps listener is TLS from the first byte; log-in allowed at once."""
    user = imap_strict.new_user()
    client = imap_strict.client(user, tls=True)
    assert "STARTTLS" not in client.capabilities
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_starttls_command_injection_is_discarded(imap_strict: IMAPWorld) -> None:
    """S3 (Twisted defect): commands pipelined behind STARTTLS in plaintext are dropped."""
    import socket

    sock = socket.create_connection(("127.0.0.1", imap_strict.port), timeout=10)
    greeting = sock.recv(4096)
    assert greeting.startswith(b"* OK")
    sock.sendall(b"a STARTTLS\r\nb CAPABILITY\r\nc LOGOUT\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(1)
    assert reply == b"a OK Begin TLS negotiation now\r\n"
    context = imap_strict.ssl_context()
    tls = context.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b"d NOOP\r\n")
    answer = b""
    while b"d OK" not in answer:
        chunk = tls.recv(4096)
        assert chunk, answer
        answer += chunk
    assert b"b OK" not in answer and b"BYE" not in answer and b"* CAPABILITY" not in answer
    assert answer == b"d OK NOOP completed\r\n"
    tls.close()


# ---------------------------------------------------------------------- limits
def test_login_timeout(imap_strict: IMAPWorld) -> None:
    """S3: a client that never logs in is dropped after the (short) log-in timeout."""
    raw = imap_strict.raw()
    started = time.monotonic()
    assert raw.line() == b"* BYE Autologout; idle for too long"
    assert 1.0 < time.monotonic() - started < 5
    assert raw.closed()


def test_overlong_line_is_bad_and_session_survives(imap: IMAPWorld) -> None:
    """S3: a line over the limit gets BAD without being buffered; the session goes on."""
    raw = imap.raw()
    raw.send(b"a NOOP " + b"x" * 70000 + b"\r\n")
    assert raw.line() == b"a BAD Command line too long"
    assert raw.command(b"b", b"NOOP")[-1] == b"b OK NOOP completed"
    raw.close()


def test_too_many_bad_commands_disconnect(imap: IMAPWorld) -> None:
    """S3: a client sending garbage is disconnected after 20 invalid commands."""
    raw = imap.raw()
    raw.send(b"x GARBAGE\r\n" * 25)
    lines = [raw.line() for _ in range(21)]
    assert lines[-1] == b"* BYE Too many invalid commands"
    assert raw.closed()


def test_sessions_per_user_are_limited(imap: IMAPWorld) -> None:
    """S3: at most max_sessions_per_user (5 on this server) sessions per user."""
    user = imap.new_user()
    clients = [imap.client(user) for _ in range(5)]
    extra = imap.client()
    with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
        extra.login(user.address, user.password)
    clients.pop().logout()
    time.sleep(0.2)
    assert extra.login(user.address, user.password)[0] == "OK"
    for client in [*clients, extra]:
        client.logout()


def test_preauth_literal_limit(imap: IMAPWorld) -> None:
    """S3: before log-in a literal over 8 KiB is refused without the '+' continuation."""
    raw = imap.raw()
    raw.send(b"a LOGIN {100000}\r\n")
    assert raw.line() == b"a BAD Literal is over the limit of 8192 bytes"
    assert raw.command(b"b", b"NOOP")[-1] == b"b OK NOOP completed"
    raw.close()


def test_login_with_literals(imap: IMAPWorld) -> None:
    """S3: user name and password may be synchronizing or LITERAL+ literals."""
    user = imap.new_user()
    raw = imap.raw()
    name, password = user.address.encode(), user.password.encode()
    raw.send(b"a LOGIN {%d}\r\n" % len(name))
    assert raw.line() == b"+ Ready for literal data"
    raw.send(name + b" {%d+}\r\n" % len(password) + password + b"\r\n")
    assert raw.response(b"a")[-1].startswith(b"a OK")
    raw.close()


def test_pipelined_commands_are_answered_in_order(imap: IMAPWorld) -> None:
    """S3: commands sent together (some waiting for the directory) get replies in order."""
    user = imap.new_user()
    raw = imap.raw()
    login = b'a LOGIN "%s" "%s"\r\n' % (user.address.encode(), user.password.encode())
    raw.send(login + b"b SELECT INBOX\r\nc NOOP\r\nd CAPABILITY\r\ne LOGOUT\r\n")
    tags = [line.split()[0] for line in raw.response(b"e") if not line.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d", b"e"]
    assert raw.closed()


def test_nesting_depth_is_bounded(imap: IMAPWorld) -> None:
    """S3: deeply nested parentheses are BAD (bounded parsing), the session survives."""
    user = imap.new_user()
    raw = imap.raw()
    raw.login(user)
    raw.command(b"s", b"SELECT INBOX")
    deep = b"(" * 100 + b"ALL" + b")" * 100
    assert raw.command(b"a", b"SEARCH " + deep) == [b"a BAD Too deeply nested"]
    assert raw.command(b"b", b'ID ("x" ("y"))') == [b"b BAD Expected a string for the argument"]
    assert raw.command(b"c", b"NOOP") == [b"c OK NOOP completed"]
    raw.close()


def test_session_limit_counts_both_listeners(imap: IMAPWorld) -> None:
    """S3: the per-user session limit covers STARTTLS and implicit-TLS listeners together."""
    user = imap.new_user()
    clients = [imap.client(user) for _ in range(3)] + [
        imap.client(user, tls=True) for _ in range(2)
    ]
    extra = imap.client(tls=True)
    with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
        extra.login(user.address, user.password)
    for client in [*clients, extra]:
        client.logout()
