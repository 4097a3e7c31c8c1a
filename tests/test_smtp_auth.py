"""SMTP AUTH and submission (P5, A11): PLAIN, LOGIN, CRAM-MD5, TLS first, failures, logging."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from mailmax.core.authlimit import AuthLimiter
from mailmax.core.directory.api import AccountType
from mailmax.core.smtp import auth
from mailmax.core.smtp.commands import SMTPReplyError
from mailmax.core.verdicts import reject
from tests.test_smtp_harness import World, close_worlds, plugin_set  # noqa: F401


def b64(text: str | bytes) -> str:
    """Base64 of ``text`` as str."""
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def tls_client(world: World) -> Any:
    """A session on an implicit-TLS port, after EHLO."""
    client = world.connect(implicit_tls=True)
    client.cmd("EHLO client.example")
    return client


# ---------------------------------------------------------------------- mechanisms alone
def test_plain_mechanism() -> None:
    """P5: PLAIN parses authzid/authcid/password; proxy authorization is refused."""
    creds = auth.Plain().start(b"\0alice\0s3cret")
    assert (creds.login, creds.password) == ("alice", "s3cret")
    assert auth.Plain().start(b"alice\0alice\0pw").login == "alice"
    assert auth.Plain().start(None) == b""
    with pytest.raises(SMTPReplyError) as err:
        auth.Plain().start(b"admin\0alice\0pw")
    assert err.value.code == 535
    with pytest.raises(SMTPReplyError) as err:
        auth.Plain().start(b"no-nuls")
    assert err.value.code == 501
    assert "s3cret" not in repr(creds)


def test_login_and_cram_mechanisms() -> None:
    """P5: LOGIN asks for user and password; CRAM-MD5 checks an HMAC of its own challenge."""
    login = auth.Login()
    assert login.start(None) == b"Username:"
    assert login.step(b"alice") == b"Password:"
    assert login.step(b"pw").password == "pw"
    cram = auth.CramMD5("mx.example.test")
    challenge = cram.start(None)
    assert challenge.startswith(b"<") and challenge.endswith(b"@mx.example.test>")
    digest = hmac.new(b"secret", challenge, "md5").hexdigest()
    creds = cram.step(f"alice {digest}".encode())
    assert creds.verify_cram("secret") and not creds.verify_cram("other")
    with pytest.raises(SMTPReplyError):
        auth.CramMD5("h").step(b"alice nothex")


def test_response_decoding() -> None:
    """P5: '*' cancels (501 5.7.0), '=' is empty, bad base64 is 501 5.5.2."""
    assert auth.decode_response(b"=") == b""
    with pytest.raises(SMTPReplyError) as err:
        auth.decode_response(b"*")
    assert (err.value.code, err.value.status) == (501, "5.7.0")
    with pytest.raises(SMTPReplyError) as err:
        auth.decode_response(b"!!notbase64")
    assert (err.value.code, err.value.status) == (501, "5.5.2")


# ---------------------------------------------------------------------- protocol
def test_auth_is_not_offered_before_tls() -> None:
    """P5: without TLS, AUTH is not advertised and answers 538 5.7.11."""
    client = World().connect()
    assert "AUTH" not in client.cmd("EHLO c")
    assert client.cmd(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'alicesecret')}").startswith(
        "538 5.7.11"
    )


def test_auth_after_starttls() -> None:
    """P5: after STARTTLS and a new EHLO, AUTH PLAIN LOGIN is offered and works."""
    world = World()
    client = world.connect()
    client.cmd("EHLO c")
    client.cmd("STARTTLS")
    assert client.transport.before_tls == b"220 2.0.0 Ready to start TLS\r\n"
    ehlo = client.cmd("EHLO c")
    assert "250 AUTH PLAIN LOGIN\r\n" in ehlo and "STARTTLS" not in ehlo
    assert client.login() == "235 2.7.0 Authentication successful\r\n"
    assert client.proto.session.auth_user == "alice@example.test"
    world.clock.pump(lambda: world.sql.last_login("alice@example.test") is not None)
    assert world.sql.last_login("alice@example.test")[:2] == ("smtp", "192.0.2.10")


def test_plaintext_auth_when_allowed_offers_cram_md5() -> None:
    """P5: with allow_plaintext_auth, AUTH is offered without TLS, CRAM-MD5 included."""
    world = World(smtp={"allow_plaintext_auth": True})
    client = world.connect()
    assert "250 AUTH PLAIN LOGIN CRAM-MD5" in client.cmd("EHLO c")
    challenge = base64.b64decode(client.cmd("AUTH CRAM-MD5")[4:].strip())
    digest = hmac.new(b"alicesecret", challenge, "md5").hexdigest()
    assert client.cmd(b64(f"alice@example.test {digest}")).startswith("235 2.7.0")


def test_cram_md5_wrong_digest() -> None:
    """P5: a wrong CRAM-MD5 digest is 535 5.7.8."""
    client = World(smtp={"allow_plaintext_auth": True}).connect()
    client.cmd("EHLO c")
    client.cmd("AUTH CRAM-MD5")
    assert client.cmd(b64("alice " + "0" * 32)).startswith("535 5.7.8")


def test_plain_without_initial_response_and_login() -> None:
    """P5: PLAIN with an empty challenge, LOGIN with its two prompts; bare names use the
    listener's default domain (A11)."""
    client = tls_client(World())
    assert client.cmd("AUTH PLAIN") == "334 \r\n"
    assert client.cmd(b64("\0alice\0alicesecret")).startswith("235")
    other = tls_client(World())
    assert other.cmd("AUTH LOGIN") == f"334 {b64('Username:')}\r\n"
    assert other.cmd(b64("bob")) == f"334 {b64('Password:')}\r\n"
    assert other.cmd(b64("bobsecret")).startswith("235")
    assert other.proto.session.auth_user == "bob@example.test"
    third = tls_client(World())
    third.cmd(f"AUTH LOGIN {b64('alice@example.test')}")
    assert third.cmd(b64("alicesecret")).startswith("235")


@pytest.mark.parametrize(
    ("fields", "password"),
    [
        ({}, "wrong"),
        ({"account_type": AccountType.DISABLED}, "pw"),
        ({"smtp_auth_disabled": True}, "pw"),
    ],
)
def test_auth_failures(fields: dict[str, Any], password: str) -> None:
    """P5, A5: a wrong password, a disabled account or disabled SMTP AUTH is 535 5.7.8."""
    world = World()
    world.add_user("carol@example.test", "pw", **fields)
    client = tls_client(world)
    assert client.login("carol@example.test", password).startswith("535 5.7.8")
    assert client.proto.session.auth_user is None
    assert world.sql.last_login("carol@example.test") is None


def test_auth_sequence_errors() -> None:
    """P5: AUTH twice, during a transaction, unknown mechanisms, cancel and bad base64."""
    client = tls_client(World())
    assert client.cmd("AUTH").startswith("501 5.5.4")
    assert client.cmd("AUTH X-UNKNOWN").startswith("504 5.5.4")
    client.cmd("AUTH LOGIN")
    assert client.cmd("*").startswith("501 5.7.0")
    client.cmd("AUTH PLAIN")
    assert client.cmd("%%%").startswith("501 5.5.2")
    client.cmd("MAIL FROM:<a@b.test>")
    assert client.login().startswith("503 5.5.1")
    client.cmd("RSET")
    assert client.login().startswith("235")
    assert client.login().startswith("503 5.5.1")


def test_auth_needs_ehlo() -> None:
    """P5: AUTH is an extension: it needs EHLO first."""
    client = World().connect(implicit_tls=True)
    assert client.login().startswith("503 5.5.1")


def test_auth_hook_can_refuse_a_login() -> None:
    """P5: the auth hook's reject turns a good password into a refusal."""
    world = World(plugins=plugin_set(mailmax_auth=lambda username: reject("Locked", 535, "5.7.8")))
    client = tls_client(world)
    assert client.login() == "535 5.7.8 Locked\r\n"
    assert client.proto.session.auth_user is None


def test_failed_logins_count_as_errors() -> None:
    """P5: repeated failures close the session at max_errors."""
    client = tls_client(World(smtp={"max_errors": 3}))
    for _ in range(2):
        assert client.login(password="bad").startswith("535")
    assert client.login(password="bad") == (
        "535 5.7.8 Authentication credentials invalid\r\n"
        "421 4.7.0 Too many errors, closing connection\r\n"
    )
    assert client.closed


# ---------------------------------------------------------------------- submission
@pytest.mark.parametrize("service", ["submission", "smtps"])
def test_submission_requires_auth(service: str) -> None:
    """P5: on submission and smtps, MAIL without AUTH is 530 5.7.0; after AUTH it works."""
    world = World(service=service)
    client = world.connect(implicit_tls=service == "smtps")
    ehlo = client.cmd("EHLO c")
    assert ("STARTTLS" in ehlo) == (service == "submission")
    assert client.cmd("MAIL FROM:<alice@example.test>") == "530 5.7.0 Authentication required\r\n"
    if service == "submission":
        client.cmd("STARTTLS")
        client.cmd("EHLO c")
    assert client.login().startswith("235")
    replies = client.send_mail("alice@example.test", ["user@remote.test"], b"hi", helo=False)
    assert replies[-1].startswith("250 2.0.0")
    envelope, stored = world.stored()[0]
    assert envelope.auth_user == "alice@example.test"
    assert b"with ESMTPSA id" in stored


def test_port_25_does_not_require_auth() -> None:
    """P5: inbound port 25 takes mail for local users without AUTH."""
    client = World(service="smtp").connect()
    client.cmd("EHLO c")
    assert client.cmd("MAIL FROM:<a@remote.test>").startswith("250")


def test_logins_are_logged_without_passwords() -> None:
    """P5, L2: successful and failed logins are logged with the user; passwords never are."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        client = tls_client(World())
        client.login(password="wrongpassword")
        client.login()
        other = tls_client(World(smtp={"allow_plaintext_auth": True}))
        other.cmd("AUTH LOGIN")
        other.cmd(b64("bob"))
        other.cmd(b64("bobsecret"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    from twisted.logger import formatEvent

    smtp_lines = [formatEvent(e) for e in events if e.get("log_namespace") == "mailmax.smtp"]
    text = "\n".join(smtp_lines)
    assert "login alice@example.test failed" in text
    assert "login alice@example.test ok" in text
    assert "login bob@example.test ok" in text
    for secret in ("wrongpassword", "alicesecret", "bobsecret", b64("bobsecret")):
        assert secret not in text
    assert all(secret not in repr(e) for e in events for secret in ("alicesecret", "bobsecret"))


def test_trusted_networks_need_no_auth_on_submission() -> None:
    """P5, P11: a client in trusted_networks (e.g. a webmail host) may submit without AUTH;
    other clients on the same port may not."""
    world = World(service="submission", smtp={"trusted_networks": ["10.0.0.0/8"]})
    trusted = world.connect(peer="10.9.8.7")
    replies = trusted.send_mail("alice@example.test", ["user@remote.test"], b"hi")
    assert replies[-1].startswith("250 2.0.0")
    stranger = world.connect(peer="192.0.2.1")
    stranger.cmd("EHLO c")
    assert stranger.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")


def test_failed_logins_are_delayed_and_then_blocked() -> None:
    """P5: failures answer only after the penalty delay; after block_after failures even the
    right password is refused with 454 4.7.0 (the limiter shared with POP3 and IMAP)."""
    world = World(smtp={"max_errors": 100})
    world.authlimit = AuthLimiter(
        failure_delay=2.0, max_failure_delay=2.0, block_after=3, clock=world.clock.seconds
    )
    world.factory.authlimit = world.authlimit
    client = tls_client(world)

    def attempt(password: str) -> tuple[str, str]:
        calls = len(world.clock.getDelayedCalls())
        client.send(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + password)}\r\n".encode(), False)
        world.clock.pump(lambda: len(world.clock.getDelayedCalls()) > calls)  # the penalty wait
        early = client.read()
        world.clock.advance(2.0)
        world.settle()
        return early, client.read()

    for _ in range(3):
        assert attempt("bad") == ("", "535 5.7.8 Authentication credentials invalid\r\n")
    early, late = attempt("alicesecret")
    assert early == "" and late.startswith("454 4.7.0 Temporary authentication failure")
    assert client.proto.session.auth_user is None


def test_pop_before_smtp_lets_a_recent_mailbox_login_relay() -> None:
    """P5: with pop_before_smtp_minutes, a POP3/IMAP login from the same IP lets it relay
    and submit for that many minutes, and no longer."""
    world = World(service="submission", smtp={"pop_before_smtp_minutes": 10})
    world.factory.logins.note("192.0.2.10", "alice@example.test")
    client = world.connect(peer="192.0.2.10")
    replies = client.send_mail("alice@example.test", ["user@remote.test"], b"hi")
    assert replies[-1].startswith("250 2.0.0")
    other = world.connect(peer="192.0.2.11")
    other.cmd("EHLO c")
    assert other.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")
    world.clock.advance(601)
    late = world.connect(peer="192.0.2.10")
    late.cmd("EHLO c")
    assert late.cmd("MAIL FROM:<alice@example.test>").startswith("530 5.7.0")


def test_pop_before_smtp_is_off_by_default() -> None:
    """P5, P11: without pop_before_smtp_minutes a mailbox login grants nothing."""
    world = World()
    world.factory.logins.note("192.0.2.10", "alice@example.test")
    client = world.connect(peer="192.0.2.10")
    client.cmd("EHLO c")
    client.cmd("MAIL FROM:<alice@example.test>")
    assert client.cmd("RCPT TO:<user@remote.test>") == "554 5.7.1 Relay access denied\r\n"
