"""The SMTP client in process (S4): dot-stuffing, replies, PIPELINING, STARTTLS, AUTH, SIZE.

The client talks to a ``StringTransport``; the test plays the server, so every byte the client
sends is checked exactly. Real-socket delivery is in ``test_outbound_delivery.py``.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mailmax.core.outbound.client import (
    CHUNK_SIZE,
    DotStuffer,
    Reply,
    SessionError,
    SMTPClient,
    stuff,
)


def unstuff(stream: bytes) -> bytes:
    """What a receiving server makes of a DATA stream: the message before the lone dot."""
    out = []
    lines = stream.split(b"\r\n")
    for index, line in enumerate(lines):
        if line == b".":
            assert lines[index + 1 :] == [b""], "data after the end of the message"
            return b"".join(out)
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    raise AssertionError("the DATA stream has no end")


def stuff_in_chunks(message: bytes, size: int) -> bytes:
    stuffer = DotStuffer()
    parts = [stuffer(message[i : i + size]) for i in range(0, len(message), size)]
    return b"".join(parts) + stuffer.finish()


TRICKY = (
    b".starts with a dot\r\n..two dots\r\n.\r\nmiddle\r\n\r\n. space\r\nx.\r\n.\r\n..\r\nend\r\n"
)


@pytest.mark.parametrize("size", [*range(1, 40), 64, 1000])
def test_dot_stuffing_survives_every_chunk_boundary(size: int) -> None:
    """S4: whatever the chunk size, every line starting with '.' is stuffed, the receiver
    gets the message byte for byte, and no content line ends DATA early."""
    stream = stuff_in_chunks(TRICKY, size)
    assert stream == stuff(TRICKY)
    assert stream.count(b"\r\n.\r\n") == 1 and stream.endswith(b"\r\n.\r\n")
    assert unstuff(stream) == TRICKY


def test_random_messages_round_trip_at_random_chunk_sizes() -> None:
    """S4: random lines made of '.', CR, LF and text survive any split unchanged."""
    rng = random.Random(1234)
    for _ in range(300):
        lines = [
            rng.choice([b".", b"..", b"", b"a", b".a", b"a.", b". ", b"x" * rng.randint(1, 9)])
            for _ in range(rng.randint(1, 30))
        ]
        message = b"".join(line + b"\r\n" for line in lines)
        size = rng.randint(1, 12)
        assert unstuff(stuff_in_chunks(message, size)) == message


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_bare_cr_and_lf_become_crlf(size: int) -> None:
    """S4: bare LF and bare CR never reach the next hop (no '<LF>.<CR><LF>' smuggling); a
    message without a final line end gets one."""
    message = b"a\nb\rc\r\n.\n.\r\n\r.x"
    stream = stuff_in_chunks(message, size)
    assert stream == b"a\r\nb\r\nc\r\n..\r\n..\r\n\r\n..x\r\n.\r\n"
    assert b"\r\n" not in stream.replace(b"\r\n", b"")
    assert stuff(b"") == b".\r\n"
    assert stuff(b"no end") == b"no end\r\n.\r\n"


def test_reply_status_and_text() -> None:
    """S4: an enhanced status code is taken from the reply, else derived from the code."""
    assert str(Reply(550, ("5.1.1 User unknown",))) == "550 5.1.1 User unknown"
    assert Reply(550, ("User unknown",)).status == "5.0.0"
    assert str(Reply(451, ("Try later",))) == "451 4.0.0 Try later"
    assert Reply(250, ("2.0.0 a", "b")).text == "2.0.0 a b"


# ---------------------------------------------------------------------- a scripted server
class TLSTransport(StringTransport):
    """A string transport that records STARTTLS and aborts."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_started = False
        self.aborted = False

    def startTLS(self, options: Any) -> None:
        self.tls_started = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


class Peer:
    """The test's side of a client connection."""

    def __init__(self, tmp_path: Path, timeout: float = 10) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.client = SMTPClient(reactor=self.clock, timeout=timeout, host="peer.test")
        self.transport = TLSTransport()
        self.client.makeConnection(self.transport)
        self.tmp_path = tmp_path

    def sent(self) -> bytes:
        """What the client wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def say(self, data: bytes) -> None:
        self.client.dataReceived(data)

    def pump(self) -> None:
        """Let a registered producer (the message) write everything."""
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()

    def run(self, coro: Any) -> defer.Deferred[Any]:
        return defer.ensureDeferred(coro)


def result(d: defer.Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the operation has not finished"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def greet(peer: Peer, extensions: list[str]) -> None:
    d = peer.run(peer.client.start("mx.example.com"))
    peer.say(b"220 peer.test ESMTP\r\n")
    assert peer.sent() == b"EHLO mx.example.com\r\n"
    lines = ["peer.test", *extensions]
    reply = "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}" for i, t in enumerate(lines))
    peer.say(reply.encode() + b"\r\n")
    result(d)


def test_pipelined_transaction_in_one_write_with_per_recipient_replies(tmp_path: Path) -> None:
    """S4: with PIPELINING, MAIL, every RCPT and DATA leave in one write; each recipient
    gets its own reply; SIZE and BODY=8BITMIME are declared; the message is dot-stuffed."""
    peer = Peer(tmp_path)
    greet(peer, ["PIPELINING", "SIZE 1000", "8BITMIME"])
    message = tmp_path / "m"
    message.write_bytes(b"Subject: x\r\n\r\n.hidden\r\n")
    d = peer.run(
        peer.client.transaction(
            "a@example.com", ["b@x.test", "c@x.test"], message, size=25, eight_bit=True
        )
    )
    assert peer.sent() == (
        b"MAIL FROM:<a@example.com> SIZE=25 BODY=8BITMIME\r\n"
        b"RCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n"
    )
    peer.say(b"250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n")
    peer.pump()
    assert peer.sent() == b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
    peer.say(b"250 2.0.0 queued\r\n")
    done = result(d)
    assert str(done.replies["b@x.test"]) == "550 5.1.1 no such user"
    assert str(done.replies["c@x.test"]) == "250 2.0.0 queued"
    assert done.reusable


def test_without_pipelining_one_command_at_a_time(tmp_path: Path) -> None:
    """S4: without PIPELINING each command waits for its reply; a 5xx to MAIL FROM is a
    permanent session error."""
    peer = Peer(tmp_path)
    greet(peer, [])
    message = tmp_path / "m"
    message.write_bytes(b"x\r\n")
    d = peer.run(peer.client.transaction("a@example.com", ["b@x.test"], message, size=3))
    assert peer.sent() == b"MAIL FROM:<a@example.com>\r\n"
    peer.say(b"553 5.7.1 sender refused\r\n")
    with pytest.raises(SessionError) as caught:
        result(d)
    assert not caught.value.temporary and "553 5.7.1" in caught.value.diagnostic


def test_all_recipients_refused_ends_pipelined_data_and_resets(tmp_path: Path) -> None:
    """S4 (RFC 2920): when every RCPT is refused but DATA got 354, an empty message ends it;
    RSET makes the connection reusable."""
    peer = Peer(tmp_path)
    greet(peer, ["PIPELINING"])
    message = tmp_path / "m"
    message.write_bytes(b"x\r\n")
    d = peer.run(peer.client.transaction("a@example.com", ["b@x.test"], message, size=3))
    peer.sent()
    peer.say(b"250 ok\r\n450 4.2.0 later\r\n354 go\r\n")
    assert peer.sent() == b".\r\n"
    peer.say(b"554 5.5.1 no recipients\r\n")
    assert peer.sent() == b"RSET\r\n"
    peer.say(b"250 ok\r\n")
    done = result(d)
    assert str(done.replies["b@x.test"]) == "450 4.2.0 later" and done.reusable


def test_message_over_the_size_limit_is_not_sent(tmp_path: Path) -> None:
    """S4 (RFC 1870): a message larger than the server's SIZE fails permanently, unsent."""
    peer = Peer(tmp_path)
    greet(peer, ["SIZE 100"])
    d = peer.run(peer.client.transaction("a@x", ["b@y"], tmp_path / "none", size=101))
    with pytest.raises(SessionError) as caught:
        result(d)
    assert caught.value.diagnostic.startswith("552 5.3.4") and not caught.value.temporary
    assert peer.sent() == b""


def test_helo_fallback_when_ehlo_is_refused(tmp_path: Path) -> None:
    """S4: a server that refuses EHLO gets HELO; no extension is then used."""
    peer = Peer(tmp_path)
    d = peer.run(peer.client.start("me.test"))
    peer.say(b"220 old server\r\n")
    assert peer.sent() == b"EHLO me.test\r\n"
    peer.say(b"502 what\r\n")
    assert peer.sent() == b"HELO me.test\r\n"
    peer.say(b"250 hi\r\n")
    result(d)
    assert not peer.client.esmtp and not peer.client.offers("PIPELINING")


def test_greeting_refusal_is_a_session_error(tmp_path: Path) -> None:
    """S4: a 4xx/5xx greeting ends the session (the next host is tried)."""
    peer = Peer(tmp_path)
    d = peer.run(peer.client.start("me.test"))
    peer.say(b"554 5.3.2 go away\r\n")
    with pytest.raises(SessionError, match=r"554 5\.3\.2"):
        result(d)


def test_starttls_response_injection_drops_the_connection(tmp_path: Path) -> None:
    """S4 (RFC 3207 6): a reply arriving with the 220 to STARTTLS, before the handshake,
    drops the connection; TLS is not started and nothing more is sent."""
    peer = Peer(tmp_path)
    greet(peer, ["STARTTLS"])
    d = peer.run(peer.client.starttls(object(), "mx.example.com"))
    assert peer.sent() == b"STARTTLS\r\n"
    peer.say(b"220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n")
    with pytest.raises(SessionError, match="response injection"):
        result(d)
    assert peer.transport.aborted and not peer.transport.tls_started
    assert peer.sent() == b""


def test_starttls_then_ehlo_again(tmp_path: Path) -> None:
    """S4: after a clean 220 the client starts TLS and says EHLO again."""
    peer = Peer(tmp_path)
    greet(peer, ["STARTTLS"])
    d = peer.run(peer.client.starttls(object(), "mx.example.com"))
    peer.sent()
    peer.say(b"220 2.0.0 go ahead\r\n")
    assert peer.transport.tls_started
    assert peer.sent() == b"EHLO mx.example.com\r\n"
    peer.say(b"250-peer.test\r\n250 AUTH PLAIN LOGIN\r\n")
    result(d)
    assert peer.client.tls and peer.client.extensions["AUTH"] == "PLAIN LOGIN"


def test_auth_plain_and_login(tmp_path: Path) -> None:
    """Q7: credentials go with AUTH PLAIN, or LOGIN when only that is offered."""
    peer = Peer(tmp_path)
    peer.client.tls = True
    peer.client.extensions = {"AUTH": "PLAIN LOGIN"}
    d = peer.run(peer.client.auth("user", "pw"))
    token = base64.b64encode(b"\0user\0pw").decode()
    assert peer.sent() == f"AUTH PLAIN {token}\r\n".encode()
    peer.say(b"235 2.7.0 ok\r\n")
    result(d)
    peer.client.extensions = {"AUTH": "LOGIN"}
    d = peer.run(peer.client.auth("user", "pw"))
    assert peer.sent() == b"AUTH LOGIN\r\n"
    peer.say(b"334 VXNlcm5hbWU6\r\n")
    assert peer.sent() == base64.b64encode(b"user") + b"\r\n"
    peer.say(b"334 UGFzc3dvcmQ6\r\n")
    assert peer.sent() == base64.b64encode(b"pw") + b"\r\n"
    peer.say(b"535 5.7.8 bad\r\n")
    with pytest.raises(SessionError, match=r"535 5\.7\.8"):
        result(d)


def test_no_credentials_without_tls(tmp_path: Path) -> None:
    """Q7: credentials are never sent over a connection without TLS."""
    peer = Peer(tmp_path)
    peer.client.extensions = {"AUTH": "PLAIN"}
    with pytest.raises(SessionError, match="clear text"):
        result(peer.run(peer.client.auth("user", "pw")))
    assert peer.sent() == b""


def test_reply_timeout_and_malformed_replies(tmp_path: Path) -> None:
    """Q6: a reply that does not come within smtp_timeout fails the session; so does a
    malformed reply or a multi-line reply with changing codes."""
    peer = Peer(tmp_path, timeout=5)
    d = peer.run(peer.client.start("me.test"))
    peer.clock.advance(5)
    with pytest.raises(SessionError, match="no greeting within 5 seconds"):
        result(d)
    assert peer.transport.aborted
    for bad in (b"hello there\r\n", b"250-a\r\n251 b\r\n", b"2" * (CHUNK_SIZE + 10)):
        peer = Peer(tmp_path)
        d = peer.run(peer.client.start("me.test"))
        peer.say(bad)
        with pytest.raises(SessionError, match="Protocol error"):
            result(d)


def test_large_message_streams_in_chunks_and_stays_exact(tmp_path: Path) -> None:
    """S4: a message of several chunks with a '.'-line on each chunk boundary arrives exact."""
    parts = []
    for k in range(1, 5):
        filler = b"y" * (k * CHUNK_SIZE - sum(map(len, parts)) - 2)
        parts.append(filler + b"\r\n")
        parts.append(b".boundary\r\n")
    message = b"".join(parts)
    peer = Peer(tmp_path)
    greet(peer, ["PIPELINING"])
    path = tmp_path / "big"
    path.write_bytes(message)
    trace = b"Return-Path: <a@x>\r\nDelivered-To: b@here\r\n"  # a local delivery's, not sent
    path.write_bytes(trace + message)
    d = peer.run(peer.client.transaction("a@x", ["b@y"], path, size=len(message), skip=len(trace)))
    peer.sent()
    peer.say(b"250 ok\r\n250 ok\r\n354 go\r\n")
    peer.pump()
    stream = peer.sent()
    peer.say(b"250 ok\r\n")
    result(d)
    assert unstuff(stream) == message


def test_pipelined_replies_each_within_the_timeout_of_the_one_before(tmp_path: Path) -> None:
    """Q6: replies that keep coming keep the session alive past one timeout in all; a reply
    that does not come within smtp_timeout of the one before fails the session and names
    what was awaited."""
    peer = Peer(tmp_path, timeout=5)
    greet(peer, ["PIPELINING"])
    message = tmp_path / "m"
    message.write_bytes(b"x\r\n")
    d = peer.run(
        peer.client.transaction("a@example.com", ["b@x.test", "c@x.test"], message, size=3)
    )
    peer.sent()
    for reply in (b"250 ok\r\n", b"250 ok\r\n"):
        peer.clock.advance(4)
        peer.say(reply)
    peer.clock.advance(4)
    assert not d.called and not peer.transport.aborted
    peer.clock.advance(1)
    with pytest.raises(SessionError, match="no reply to RCPT within 5 seconds"):
        result(d)
    assert peer.transport.aborted


def pipelined_pair(
    tmp_path: Path, second_size: int
) -> tuple[Peer, defer.Deferred[Any], list[defer.Deferred[Any]]]:
    """A first transaction whose message is written, with a second one started from its
    ``on_sent``; the first one's reply has not come yet."""
    peer = Peer(tmp_path)
    greet(peer, ["PIPELINING", "SIZE 100"])
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"one\r\n")
    second.write_bytes(b"two\r\n")
    started: list[defer.Deferred[Any]] = []

    def next_one() -> None:
        transaction = peer.client.transaction(
            "a@example.com", ["c@x.test"], second, size=second_size
        )
        started.append(peer.run(transaction))

    d1 = peer.run(
        peer.client.transaction("a@example.com", ["b@x.test"], first, size=5, on_sent=next_one)
    )
    peer.sent()
    peer.say(b"250 ok\r\n250 ok\r\n354 go\r\n")
    peer.pump()
    return peer, d1, started


def test_next_transaction_follows_the_end_of_a_message_before_its_reply(tmp_path: Path) -> None:
    """Q2: with PIPELINING the next transaction may start as soon as a message is written:
    its commands leave in the same write as the end of the message, and each transaction
    gets its own replies, in order."""
    peer, d1, (d2,) = pipelined_pair(tmp_path, 5)
    assert peer.sent() == (
        b"one\r\n.\r\nMAIL FROM:<a@example.com> SIZE=5\r\nRCPT TO:<c@x.test>\r\nDATA\r\n"
    )
    peer.say(b"250 2.0.0 first queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert str(result(d1).replies["b@x.test"]) == "250 2.0.0 first queued"
    peer.pump()
    assert peer.sent() == b"two\r\n.\r\n"
    peer.say(b"250 2.0.0 second queued\r\n")
    assert str(result(d2).replies["c@x.test"]) == "250 2.0.0 second queued"
    assert peer.client.idle_ok()


def test_a_transaction_that_gives_up_leaves_the_earlier_reply_alone(tmp_path: Path) -> None:
    """Q2: when the transaction started behind a written message fails at once and drops
    the connection, the connection stays open until that message's reply is in."""
    peer, d1, (d2,) = pipelined_pair(tmp_path, 500)  # over the SIZE limit: nothing written
    with pytest.raises(SessionError, match="exceeds the limit"):
        result(d2)
    peer.client.drop()
    assert not peer.transport.aborted and not peer.client.idle_ok()
    peer.say(b"250 2.0.0 first queued\r\n")
    assert str(result(d1).replies["b@x.test"]) == "250 2.0.0 first queued"
    assert peer.transport.aborted
