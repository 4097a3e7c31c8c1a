"""The SMTP server over real sockets against a running ``twistd mailmax`` (S1, P5, P6, P11).

smtplib with a verifying TLS context for the friendly paths; raw sockets for hostile input.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from typing import Any

import pytest

from tests.fixtures.server import MailMaxServer, default_sections

MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: e2e\r\n\r\nHello Bob.\r\n"


class Raw:
    """A raw SMTP conversation on a socket (optionally upgraded to TLS)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: Any = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One complete (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; got so far: {lines!r} {self.buffer!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def replies(self, count: int) -> list[str]:
        return [self.reply() for _ in range(count)]

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (nothing more to read) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.buffer == b"" and self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True


def _start(tmp_path_factory: Any, **overrides: Any) -> Any:
    data_dir = tmp_path_factory.mktemp("mailmax-smtp")
    sections = default_sections(data_dir)
    for name, value in overrides.items():
        sections[name] = {**sections.get(name, {}), **value}
    server = MailMaxServer(data_dir, sections)
    server.prepare()
    server.start()
    return server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: Any) -> Any:
    """One server for the tests that do not change its configuration."""
    server = _start(tmp_path_factory)
    yield server
    server.stop(timeout=15)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: Any) -> Any:
    """A server with a small size limit, a short idle timeout and AUTH without TLS allowed."""
    server = _start(
        tmp_path_factory,
        smtp={"max_message_size": 10000, "client_timeout": 2, "allow_plaintext_auth": True},
    )
    yield server
    server.stop(timeout=15)


def mail_with(server: Any, address: str, marker: bytes, count: int = 1) -> list[bytes]:
    """Wait until ``address`` has ``count`` messages containing ``marker``; return them."""
    deadline = time.monotonic() + 10
    while True:
        found = [m for m in server.messages(address) if marker in m]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{address}: {len(found)} messages with {marker!r}"
            return found
        time.sleep(0.05)


def raw(server: Any, service: str = "smtp") -> Raw:
    conn = Raw(server.raw(service))
    assert conn.reply().startswith("220 mail.example.test ESMTP MailMax")
    return conn


def test_submission_starttls_and_auth_plain(shared: Any) -> None:
    """P5, S1: submission with STARTTLS (certificate verified) and AUTH PLAIN delivers mail."""
    with smtplib.SMTP("localhost", shared.submission_port, timeout=10) as client:
        client.ehlo("client.example")
        assert "auth" not in client.esmtp_features
        assert client.mail("alice@example.test")[0] == 530
        client.rset()
        client.starttls(context=shared.ssl_context())
        client.ehlo("client.example")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert client.login("alice@example.test", "alicesecret")[0] == 235
        client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    (stored,) = mail_with(shared, "bob@example.test", b"Hello Bob.")
    assert stored.endswith(MESSAGE)
    assert re.search(rb"with ESMTPSA id [0-9a-f]{18}\r\n\tfor <bob@example.test>;", stored)


def test_smtps_login_bare_name_and_wrong_password(shared: Any) -> None:
    """P5, A11: implicit TLS; a bare login name uses the listener's domain; bad passwords 535."""
    with smtplib.SMTP_SSL(
        "localhost", shared.smtps_port, timeout=10, context=shared.ssl_context()
    ) as client:
        client.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login("bob", "wrong")
        assert err.value.smtp_code == 535
        assert client.login("bob", "bobsecret")[0] == 235
        client.sendmail("bob@example.test", ["alice@example.test"], MESSAGE.replace(b"Bob", b"Al"))
    assert mail_with(shared, "alice@example.test", b"Hello Al.")[0].endswith(b"Hello Al.\r\n")
    time.sleep(0.3)
    log = shared.log_text()
    assert "login bob failed" in log and "login bob@example.test ok" in log
    assert "bobsecret" not in log and "wrong" not in log


def test_cram_md5_with_plaintext_auth_allowed(limited: Any) -> None:
    """P5: CRAM-MD5 works for users whose clear password is kept (alice)."""
    with smtplib.SMTP("127.0.0.1", limited.smtp_port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]
        client.user, client.password = "alice@example.test", "alicesecret"
        assert client.auth("CRAM-MD5", client.auth_cram_md5)[0] == 235


def test_inbound_port_is_not_an_open_relay(shared: Any) -> None:
    """P11: without AUTH, relay tricks on port 25 are all refused; local mail is accepted."""
    conn = raw(shared)
    conn.send(b"EHLO client.example\r\nMAIL FROM:<x@remote.test>\r\n")
    assert conn.reply().startswith("250-mail.example.test")
    assert conn.reply() == "250 2.1.0 Ok"
    for path in (
        "user@remote.test",
        "user%remote.test@example.test",
        "remote.test!user@example.test",
        "@example.test:user@remote.test",
        '"user@remote.test"@example.test',
        "user@[127.0.0.1]",
    ):
        conn.send(f"RCPT TO:<{path}>\r\n".encode())
        assert conn.reply() == "554 5.7.1 Relay access denied", path
    conn.send(b"RCPT TO:<user@remote.test.>\r\nRCPT TO:<nobody@example.test>\r\nQUIT\r\n")
    assert conn.reply().startswith("501 5.1.3")
    assert conn.reply().startswith("550 5.1.1")
    assert conn.reply() == "221 2.0.0 Bye"


def test_smuggling_and_pipelining_over_a_socket(shared: Any) -> None:
    """S1: a pipelined session; a message hidden after '\\n.\\n' is refused, not delivered."""
    conn = raw(shared)
    hidden = (
        b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<ceo@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: forged\r\n\r\nwire money\r\n.\r\n"
    )
    good = b"Subject: two\r\n\r\nsmuggling test\r\n..dot\r\n.\r\n"
    conn.send(
        b"EHLO client.example\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\n" + hidden + b"MAIL FROM:<y@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\n" + good + b"QUIT\r\n"
    )
    replies = conn.replies(10)
    codes = " ".join(r[:3] for r in replies)
    assert codes == "250 250 250 354 550 250 250 354 250 221"
    (stored,) = mail_with(shared, "alice@example.test", b"smuggling test")
    assert stored.endswith(b"Subject: two\r\n\r\nsmuggling test\r\n.dot\r\n")
    time.sleep(1.0)
    for address in ("alice@example.test", "bob@example.test"):
        assert not [m for m in shared.messages(address) if b"forged" in m or b"first" in m]


def test_message_split_between_reads_at_every_byte(shared: Any) -> None:
    """S1: the message data cut in two at every byte boundary (inside a dot-stuffed line and
    inside the closing CRLF.CRLF included), each half in its own TCP segment, is stored the
    same, once each."""
    conn = raw(shared)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.send(b"EHLO client.example\r\n")
    assert conn.reply().startswith("250-")
    body = b"\r\n\r\n..stuffed\r\n..\r\nx\r\n.\r\n"
    cuts = range(1, len(b"Subject: split 00") + len(body))
    for cut in cuts:
        data = b"Subject: split %02d" % cut + body
        conn.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [r[:3] for r in conn.replies(3)] == ["250", "250", "354"]
        conn.send(data[:cut])
        time.sleep(0.005)  # lets the server read the first half on its own
        conn.send(data[cut:])
        assert conn.reply().startswith("250 2.0.0 Ok: queued as ")
    conn.send(b"QUIT\r\n")
    assert conn.reply().startswith("221")
    for cut in cuts:
        marker = b"Subject: split %02d\r\n" % cut
        (stored,) = mail_with(shared, "bob@example.test", marker)
        assert stored.endswith(marker + b"\r\n.stuffed\r\n.\r\nx\r\n")


def test_starttls_command_injection_is_discarded(shared: Any) -> None:
    """S1: commands pipelined after STARTTLS in the clear are never executed."""
    conn = raw(shared, "submission")
    conn.send(b"EHLO client.example\r\n")
    conn.reply()
    conn.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n")
    assert conn.reply() == "220 2.0.0 Ready to start TLS"
    conn.sock = shared.ssl_context().wrap_socket(conn.sock, server_hostname="localhost")
    conn.send(b"NOOP\r\nMAIL FROM:<a@example.test>\r\n")
    assert conn.reply() == "250 2.0.0 Ok"
    assert conn.reply().startswith("503 5.5.1")  # HELO must be repeated after TLS


def test_endless_line_and_long_line(shared: Any) -> None:
    """P6: a 1 MiB line without CRLF is one 500 5.5.2; the session then works normally."""
    conn = raw(shared)
    conn.send(b"NOOP " + b"x" * (1024 * 1024))
    assert conn.reply() == "500 5.5.2 Line too long"
    conn.send(b"\r\nNOOP\r\n")
    assert conn.reply() == "250 2.0.0 Ok"


def test_size_limit_and_bare_lf_over_a_socket(limited: Any) -> None:
    """P6: SIZE too big at MAIL, a too-big message after DATA, a bare-LF message: all refused."""
    conn = raw(limited)
    conn.send(b"EHLO c\r\nMAIL FROM:<x@remote.test> SIZE=20000\r\n")
    assert "250-SIZE 10000" in conn.reply()
    assert conn.reply().startswith("552 5.3.4")
    conn.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert [r[:3] for r in conn.replies(3)] == ["250", "250", "354"]
    conn.send((b"y" * 98 + b"\r\n") * 200 + b".\r\n")
    assert conn.reply().startswith("552 5.3.4")
    conn.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    conn.replies(3)
    conn.send(b"Subject: lf\r\n\r\nbare\nlf\r\n.\r\n")
    assert conn.reply().startswith("550 5.6.0")
    time.sleep(1.0)
    assert limited.messages("alice@example.test") == []


def test_idle_timeout(limited: Any) -> None:
    """P6: an idle client is told 421 4.4.2 and disconnected."""
    conn = raw(limited)
    started = time.monotonic()
    assert conn.reply().startswith("421 4.4.2")
    assert 1.8 < time.monotonic() - started < 6
    assert conn.closed()
