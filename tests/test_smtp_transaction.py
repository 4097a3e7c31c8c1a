"""Mail transactions over an in-process transport: DATA, the spool commit, limits (S1, P6, Q5)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mailmax.core.verdicts import disconnect, reject, tempfail
from tests.test_smtp_harness import World, close_worlds, plugin_set  # noqa: F401


def queued(reply: str) -> str:
    """The queue id in a ``250 ... queued as <id>`` reply."""
    match = re.fullmatch(r"250 2\.0\.0 Ok: queued as ([0-9a-f]{18})", reply.strip())
    assert match, reply
    return match.group(1)


def received_and_rest(stored: bytes) -> tuple[bytes, bytes]:
    """Split a stored message into our Received header (with folded lines) and the rest."""
    lines = stored.split(b"\r\n")
    count = 1
    while lines[count].startswith(b"\t"):
        count += 1
    header = b"\r\n".join(lines[:count]) + b"\r\n"
    return header, stored[len(header) :]


def test_message_is_stored_byte_exact_with_a_received_header() -> None:
    """S1: stored = Received header + the received bytes unstuffed, nothing else changed."""
    world = World()
    client = world.connect()
    body = b"Subject: x\r\n\r\n..one\r\n.two\r\n\tthree \r\n\r\n\xc3\xa9 8bit"
    replies = client.send_mail("x@remote.test", ["alice@example.test"], body)
    queue_id = queued(replies[-1])
    [(envelope, stored)] = world.stored()
    assert envelope.id == queue_id
    header, rest = received_and_rest(stored)
    assert rest == b"Subject: x\r\n\r\n.one\r\ntwo\r\n\tthree \r\n\r\n\xc3\xa9 8bit\r\n"
    assert header.startswith(b"Received: from client.example ([192.0.2.10])\r\n")
    assert f"by mx.example.test (MailMax) with ESMTP id {queue_id}\r\n".encode() in header
    assert b"\tfor <alice@example.test>;\r\n" in header
    assert envelope.sender == "x@remote.test"
    assert [(r.address, r.kind, r.mailbox) for r in envelope.recipients] == [
        ("alice@example.test", "local", "alice@example.test")
    ]
    assert envelope.client_ip == "192.0.2.10" and envelope.helo == "client.example"
    assert envelope.session_id == client.proto.session.session_id
    assert envelope.size == len(stored)


def test_a_message_to_one_local_mailbox_is_spooled_with_its_delivery_trace() -> None:
    """Q1/S4: for one local mailbox the spooled file starts with that delivery's Return-Path and
    Delivered-To (so delivery can hard-link it); the envelope counts them, readers skip them."""
    world = World()
    client = world.connect()
    client.send_mail("x@remote.test", ["alice@example.test"], b"Subject: one\r\n\r\nhi")
    client.send_mail("x@remote.test", ["alice@example.test", "bob@example.test"], b"two")
    one, two = world.spool.pending_ids()
    trace = b"Return-Path: <x@remote.test>\r\nDelivered-To: alice@example.test\r\n"
    raw = world.spool.message_path(one).read_bytes()
    assert raw.startswith(trace + b"Received: from client.example")
    envelope = world.spool.load(one)
    assert envelope.trace_bytes == len(trace) and envelope.size == len(raw) - len(trace)
    assert world.spool.message_bytes(world.spool.message_path(one)) == raw[len(trace) :]
    raw_two = world.spool.message_path(two).read_bytes()
    assert raw_two.startswith(b"Received: ") and world.spool.load(two).trace_bytes == 0


def test_250_only_after_the_spool_is_durable() -> None:
    """S1: the 250 reply waits for spool.accept; commands pipelined behind it wait too."""
    world = World()
    client = world.connect()
    client.cmd("EHLO c")
    client.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    client.send(b"hi\r\n.\r\nNOOP\r\n", settle=False)
    assert client.replies()[-1].startswith("354")
    assert client.proto._busy
    world.settle()
    replies = client.replies()
    assert queued(replies[0]) == world.stored()[0][0].id
    assert replies[1:] == ["250 2.0.0 Ok"]


def test_smuggled_message_after_bare_lf_dot_is_not_accepted() -> None:
    """S1 (SMTP smuggling): '\\n.\\n' does not end DATA; the hidden message is not accepted."""
    world = World()
    client = world.connect()
    smuggled = (
        b"Subject: real\r\n\r\nhello\n.\n"
        b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: forged\r\n\r\nsend money"
    )
    replies = client.send_mail("x@remote.test", ["alice@example.test"], smuggled)
    assert replies[-1].startswith("550 5.6.0")
    assert world.stored() == []
    assert client.cmd("NOOP") == "250 2.0.0 Ok\r\n"


@pytest.mark.parametrize("content", [b"a\nb", b"a\rb", b"a\0b"])
def test_bare_line_ends_and_nul_are_refused_and_nothing_stored(content: bytes) -> None:
    """S1: bare CR, bare LF and NUL are refused after the end of DATA; the session goes on."""
    world = World()
    client = world.connect()
    replies = client.send_mail("x@remote.test", ["alice@example.test"], b"S: x\r\n\r\n" + content)
    assert replies[-1].startswith("550 5.6.0")
    assert world.stored() == []
    replies = client.send_mail("x@remote.test", ["alice@example.test"], b"ok", helo=False)
    assert replies[-1].startswith("250 2.0.0 Ok: queued as")


def test_long_data_line_is_refused() -> None:
    """P6: a line longer than max_data_line is refused with 5xx after the end."""
    world = World(smtp={"max_data_line": 1000})
    client = world.connect()
    replies = client.send_mail("x@remote.test", ["alice@example.test"], b"a" * 1001)
    assert replies[-1].startswith("550 5.6.0") and "longer than 1000" in replies[-1]
    assert world.stored() == []


def test_size_parameter_over_the_limit_is_552_at_mail() -> None:
    """P6: MAIL FROM with SIZE= over the limit is refused with 552 5.3.4."""
    client = World(smtp={"max_message_size": 2048}).connect()
    client.cmd("EHLO c")
    assert client.cmd("MAIL FROM:<a@b.test> SIZE=2049").startswith("552 5.3.4")
    assert client.cmd("MAIL FROM:<a@b.test> SIZE=2048").startswith("250 2.1.0")


def test_message_over_the_limit_is_552_after_the_end() -> None:
    """P6: a message larger than max_message_size is read to its end, then refused with 552."""
    world = World(smtp={"max_message_size": 2048})
    client = world.connect()
    big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 100
    replies = client.send_mail("a@b.test", ["alice@example.test"], big)
    assert replies[-1].startswith("552 5.3.4")
    assert world.stored() == []
    assert client.cmd("RSET") == "250 2.0.0 Ok\r\n"


def test_domain_and_user_size_limits() -> None:
    """P6, A2, A5: a domain's or user's message size limit applies at RCPT (SIZE) and after DATA."""
    world = World()
    world.add_domain("small.test", max_message_size=1500)
    world.add_user("carol@small.test", "pw")
    world.add_user("dave@example.test", "pw", max_message_size=1200)
    client = world.connect()
    client.cmd("EHLO c")
    client.cmd("MAIL FROM:<a@b.test> SIZE=1600")
    assert client.cmd("RCPT TO:<carol@small.test>").startswith("552 5.3.4")
    assert client.cmd("RCPT TO:<alice@example.test>").startswith("250")
    client.cmd("RSET")
    replies = client.send_mail(
        "a@b.test", ["alice@example.test", "dave@example.test"], b"x" * 1300, helo=False
    )
    assert replies[-1].startswith("552 5.3.4")
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"x" * 1300, helo=False)
    assert replies[-1].startswith("250 2.0.0")


def test_too_many_recipients() -> None:
    """P6: recipients beyond max_recipients get 452 4.5.3; the message goes to the others."""
    world = World(smtp={"max_recipients": 2})
    world.add_user("carol@example.test", "pw")
    client = world.connect()
    replies = client.send_mail(
        "a@b.test", ["alice@example.test", "bob@example.test", "carol@example.test"], b"hi"
    )
    assert replies[4] == "452 4.5.3 Too many recipients"
    assert replies[-1].startswith("250 2.0.0")
    envelope, _ = world.stored()[0]
    assert [r.address for r in envelope.recipients] == ["alice@example.test", "bob@example.test"]


def test_duplicate_recipients_are_kept_once() -> None:
    """S1: the same recipient twice is accepted and queued once."""
    world = World()
    client = world.connect()
    client.send_mail("a@b.test", ["alice@example.test", "ALICE@example.test"], b"hi")
    envelope, _ = world.stored()[0]
    assert len(envelope.recipients) == 1


def test_session_message_limit() -> None:
    """P6: after session_message_limit messages MAIL gets 452 4.7.0."""
    client = World(smtp={"session_message_limit": 2}).connect()
    for index in range(2):
        replies = client.send_mail("a@b.test", ["alice@example.test"], b"hi", helo=index == 0)
        assert replies[-1].startswith("250 2.0.0")
    assert client.cmd("MAIL FROM:<a@b.test>").startswith("452 4.7.0")


def test_session_byte_limit() -> None:
    """P6: the bytes of one session are limited; the message that would pass the limit is 452."""
    world = World(smtp={"session_byte_limit": 3000})
    client = world.connect()
    assert client.send_mail("a@b.test", ["alice@example.test"], b"x" * 2000)[-1].startswith("250")
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"x" * 2000, helo=False)
    assert replies[-1].startswith("452 4.7.0")
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"x" * 900, helo=False)
    assert replies[-1].startswith("250")
    assert client.cmd("MAIL FROM:<a@b.test> SIZE=200").startswith("452 4.7.0")


def test_too_many_hops() -> None:
    """Q5: more Received headers than max_hops is refused with 554 5.4.6."""
    world = World(smtp={"max_hops": 3})
    client = world.connect()
    head = b"Received: from a\r\n" * 4
    replies = client.send_mail("a@b.test", ["alice@example.test"], head + b"\r\nloop")
    assert replies[-1].startswith("554 5.4.6")
    replies = client.send_mail("a@b.test", ["alice@example.test"], head[18:] + b"\r\nok", False)
    assert replies[-1].startswith("250 2.0.0")


def test_data_needs_mail_and_a_recipient() -> None:
    """S1: DATA without MAIL is 503; without an accepted recipient 554 5.5.1."""
    client = World().connect()
    client.cmd("EHLO c")
    assert client.cmd("DATA").startswith("503 5.5.1")
    client.cmd("MAIL FROM:<a@b.test>")
    client.cmd("RCPT TO:<nobody@example.test>")
    assert client.cmd("DATA").startswith("554 5.5.1")


def test_spool_error_is_a_temporary_failure() -> None:
    """S1: a disk error while committing is 451 4.3.0, never 5xx; the session goes on."""
    world = World()
    world.spool.stop()
    world.clock.pump(lambda: not world.spool.running)
    client = world.connect()
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"hi")
    assert replies[-1].startswith("451 4.3.0")
    assert world.stored() == []
    world.spool.start()
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"hi", helo=False)
    assert replies[-1].startswith("250 2.0.0")


def test_unexpected_spool_exception_is_a_temporary_failure() -> None:
    """S1: any other failure while committing also answers 451 4.3.0."""
    world = World()
    world.spool.new_id = lambda: "../not-an-id"  # type: ignore[method-assign]
    client = world.connect()
    assert client.send_mail("a@b.test", ["alice@example.test"], b"hi")[-1].startswith("451 4.3.0")
    assert client.cmd("NOOP").startswith("250")


def _data_plugin(result: Any) -> Any:
    seen: list[bytes] = []

    def mailmax_data(session: Any, envelope: Any, message: bytes) -> Any:
        seen.append(message)
        if isinstance(result, Exception):
            raise result
        return result

    return plugin_set(mailmax_data=mailmax_data), seen


@pytest.mark.parametrize(
    ("verdict", "reply"),
    [
        (tempfail(), "451 4.3.0"),
        (RuntimeError("plugin bug"), "451 4.3.0"),
        (reject("Spam", 550, "5.7.1"), "550 5.7.1 Spam"),
    ],
)
def test_data_hook_verdicts(verdict: Any, reply: str) -> None:
    """S1: the data hook sees the message as received; its tempfail or failure is 451."""
    world = World()
    world.plugins, seen = _data_plugin(verdict)
    client = world.connect()
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"Subject: s\r\n\r\nbody")
    assert replies[-1].startswith(reply)
    assert seen == [b"Subject: s\r\n\r\nbody\r\n"]
    assert world.stored() == []
    assert client.cmd("NOOP").startswith("250")


def test_data_hook_disconnect() -> None:
    """S1: a DISCONNECT verdict replies and closes."""
    world = World()
    world.plugins, _ = _data_plugin(disconnect("Bye now"))
    client = world.connect()
    replies = client.send_mail("a@b.test", ["alice@example.test"], b"x")
    assert replies[-1] == "421 4.7.0 Bye now"
    assert client.closed


def test_several_messages_in_one_session_and_pipelined() -> None:
    """S1: two whole transactions sent in one write get their replies in order."""
    world = World()
    client = world.connect()
    one = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\none\r\n.\r\n"
    two = b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n"
    client.send(b"EHLO c\r\n" + one + two)
    replies = client.replies()
    codes = [r[:3] for r in replies]
    assert codes == ["250", "250", "250", "354", "250", "250", "250", "354", "250", "221"]
    stored = world.stored()
    assert [m[1].split(b"\r\n")[-2] for m in stored] == [b"one", b"two"]
    assert stored[1][0].sender == ""


def test_mail_parameters_kept_in_the_envelope() -> None:
    """S1: BODY and SIZE are kept with the queued message; a client's AUTH= claim is dropped."""
    world = World()
    client = world.connect()
    client.cmd("EHLO c")
    client.send(
        b"MAIL FROM:<a@remote.test> BODY=8BITMIME SIZE=20 AUTH=<ceo@example.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\nDATA\r\nhello\r\n.\r\n"
    )
    assert client.replies()[-1].startswith("250 2.0.0")
    envelope, _ = world.stored()[0]
    assert envelope.params == {"BODY": "8BITMIME", "SIZE": "20"}


def test_message_accepted_hook_sees_each_accepted_message_and_cannot_undo_it() -> None:
    """S1: ``mailmax_message_accepted`` runs once per message made durable, with its size as
    received, before the 250; a plugin that fails there changes nothing of the reply."""
    seen: list[tuple[str, int, int]] = []

    def mailmax_message_accepted(session: Any, envelope: Any, size: int) -> Any:
        seen.append((envelope.sender, size, len(world.stored())))
        raise RuntimeError("plugin bug")

    world = World()
    world.plugins = plugin_set(mailmax_message_accepted=mailmax_message_accepted)
    client = world.connect()
    replies = client.send_mail("a@b.test", ["alice@example.test", "bob@example.test"], b"body")
    assert replies[-1].startswith("250 2.0.0")
    assert client.cmd("MAIL FROM:<c@d.test>").startswith("250")
    assert client.cmd("RCPT TO:<nobody@example.test>").startswith("550")
    assert client.cmd("RSET").startswith("250")
    assert seen == [("a@b.test", len(b"body\r\n"), 1)]  # durable when it ran; once
