"""Delivery status notifications (Q4): RFC 3464 reports that standard parsers read back."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailmax.core.queue.bounce import (
    FULL_RETURN_LIMIT,
    RecipientReport,
    build_report,
    make_bounce,
    wants_report,
)
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient

ORIGINAL = (
    b"Received: from client.example.org by mx.example.com; Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Caf\xc3\xa9\r\n"
    b"Message-ID: <orig-1@example.org>\r\n\r\nHello Bob\r\n"
)


def envelope(sender: str = "alice@example.org", **params: str) -> SpoolEnvelope:
    """A queued message's envelope with two local recipients."""
    return SpoolEnvelope(
        id="0660aa00bb11cc22dd",
        sender=sender,
        recipients=[
            SpoolRecipient(
                "bob@example.com",
                mailbox="bob@example.com",
                params={"ORCPT": "rfc822;Bob@Example.com"},
            ),
            SpoolRecipient("carol@example.com", mailbox="carol@example.com"),
        ],
        received_at=1727776800.0,
        size=len(ORIGINAL),
        params=params,
    )


def parse(data: bytes) -> EmailMessage:
    """Parse a generated DSN with the standard library."""
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    return email.message_from_bytes(data, policy=policy.default)


@pytest.fixture
def spooled(tmp_path: Path) -> Path:
    """The original message as the spool holds it."""
    path = tmp_path / "msg"
    path.write_bytes(ORIGINAL)
    return path


def test_report_structure_rfc3464(spooled: Path) -> None:
    """Q4: a multipart/report with text, message/delivery-status and the original message."""
    reports = [
        RecipientReport(
            "bob@example.com",
            "5.2.2",
            "552 5.2.2 Mailbox full",
            original="rfc822;Bob@Example.com",
            last_attempt=1727780400.0,
        ),
        RecipientReport("carol@example.com", "5.1.1", "550 5.1.1 No such user"),
    ]
    msg = parse(
        build_report(envelope(), reports, reporting_mta="mx.example.com", message_path=spooled)
    )
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "alice@example.org"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.com"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    text, status, returned = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert "<bob@example.com>: 552 5.2.2 Mailbox full" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, bob, carol = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.com"
    assert per_message["X-MailMax-Queue-ID"] == "0660aa00bb11cc22dd"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == 1727776800
    assert bob["Final-Recipient"] == "rfc822; bob@example.com"
    assert bob["Original-Recipient"] == "rfc822;Bob@Example.com"
    assert bob["Action"] == "failed" and bob["Status"] == "5.2.2"
    assert bob["Diagnostic-Code"] == "smtp; 552 5.2.2 Mailbox full"
    assert bob["Last-Attempt-Date"]
    assert carol["Status"] == "5.1.1" and carol["Original-Recipient"] is None
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Message-ID"] == "<orig-1@example.org>"
    assert inner.get_payload().strip() == "Hello Bob"


def test_ret_hdrs_and_big_messages_return_headers_only(tmp_path: Path) -> None:
    """Q4: RET=HDRS, or a message over the size limit, returns text/rfc822-headers only."""
    path = tmp_path / "msg"
    path.write_bytes(ORIGINAL)
    reports = [RecipientReport("bob@example.com", "5.2.2", "552 5.2.2 Mailbox full")]
    msg = parse(build_report(envelope(RET="HDRS"), reports, reporting_mta="mx", message_path=path))
    returned = list(msg.iter_parts())[-1]
    assert returned.get_content_type() == "text/rfc822-headers"
    raw = returned.get_payload(decode=True)
    assert b"Message-ID: <orig-1@example.org>" in raw and b"Hello Bob" not in raw
    big = ORIGINAL + b"x" * FULL_RETURN_LIMIT + b"\r\n"
    path.write_bytes(big)
    env = envelope()
    env.size = len(big)
    msg = parse(build_report(env, reports, reporting_mta="mx", message_path=path))
    assert list(msg.iter_parts())[-1].get_content_type() == "text/rfc822-headers"


def test_the_returned_message_leaves_out_the_trace_of_a_local_delivery(tmp_path: Path) -> None:
    """Q4: the trace headers queued for one local delivery (``trace_bytes``) are not part of
    the original message returned, in full or as headers only."""
    trace = b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.com\r\n"
    path = tmp_path / "msg"
    path.write_bytes(trace + ORIGINAL)
    reports = [RecipientReport("bob@example.com", "5.1.1", "550 5.1.1 No such user")]
    for ret in ("FULL", "HDRS"):
        env = envelope(RET=ret)
        env.trace_bytes = len(trace)
        msg = parse(build_report(env, reports, reporting_mta="mx", message_path=path))
        returned = list(msg.iter_parts())[-1]
        raw = returned.as_bytes()
        assert b"Message-ID: <orig-1@example.org>" in raw, ret
        assert b"Delivered-To" not in raw and b"Return-Path" not in raw, ret


def test_envid_and_delay_report() -> None:
    """Q4: ENVID is echoed; a delay report says the message is still being retried."""
    reports = [
        RecipientReport(
            "bob@example.com",
            "4.2.1",
            "451 4.2.1 Try later",
            action="delayed",
            will_retry_until=1728000000.0,
        )
    ]
    msg = parse(build_report(envelope(ENVID="abc123"), reports, reporting_mta="mx"))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    per_message, bob = list(msg.iter_parts())[1].get_payload()
    assert per_message["Original-Envelope-Id"] == "abc123"
    assert bob["Action"] == "delayed" and bob["Will-Retry-Until"]


def test_never_bounce_to_the_null_sender(spooled: Path) -> None:
    """Q4: a message from the null sender never gets a bounce (no bounce loops)."""
    reports = [RecipientReport("bob@example.com", "5.2.2", "552 5.2.2 Mailbox full")]
    assert (
        make_bounce(
            envelope(sender=""), reports, queue_id="q2", reporting_mta="mx", message_path=spooled
        )
        is None
    )


def test_make_bounce_comes_from_the_null_sender(spooled: Path) -> None:
    """Q4: the bounce's envelope has the null sender and goes to the original sender."""
    reports = [RecipientReport("bob@example.com", "5.2.2", "552 5.2.2 Mailbox full")]
    result = make_bounce(
        envelope(), reports, queue_id="q2", reporting_mta="mx", message_path=spooled
    )
    assert result is not None
    bounce_env, data = result
    assert bounce_env.sender == "" and bounce_env.id == "q2"
    assert [r.address for r in bounce_env.recipients] == ["alice@example.org"]
    assert bounce_env.params == {"BODY": "8BITMIME"}  # the returned message has 8-bit text
    assert parse(data).get_content_type() == "multipart/report"


def test_notify_parameter_is_honoured(spooled: Path) -> None:
    """Q4: NOTIFY=NEVER suppresses the report; NOTIFY=SUCCESS alone does not ask for failures."""
    never = SpoolRecipient("bob@example.com", params={"NOTIFY": "NEVER"})
    assert not wants_report(never)
    assert wants_report(SpoolRecipient("x@y", params={"NOTIFY": "SUCCESS,FAILURE"}))
    assert not wants_report(SpoolRecipient("x@y", params={"NOTIFY": "SUCCESS"}))
    assert wants_report(SpoolRecipient("x@y"))
    env = envelope()
    env.recipients[0].params["NOTIFY"] = "NEVER"
    reports = [RecipientReport("bob@example.com", "5.2.2", "552 5.2.2 Mailbox full")]
    assert (
        make_bounce(env, reports, queue_id="q3", reporting_mta="mx", message_path=spooled) is None
    )


def test_report_needs_recipients() -> None:
    """Q4: an empty report is a programming error, said clearly."""
    with pytest.raises(ValueError, match="at least one"):
        build_report(envelope(), [], reporting_mta="mx")
