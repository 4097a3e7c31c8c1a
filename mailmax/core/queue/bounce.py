"""Delivery status notifications (RFC 3464) for failed or delayed recipients.

A DSN is a ``multipart/report; report-type=delivery-status`` message from the null sender:
a human-readable explanation, the machine-readable ``message/delivery-status`` part, and the
original message (``message/rfc822``) or only its header (``text/rfc822-headers``), following
the sender's ``RET`` parameter (RFC 3461). A message from the null sender never gets a DSN, so
two servers can never bounce a bounce back and forth.
"""

from __future__ import annotations

import email
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import charset, policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from pathlib import Path

from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient

#: The generator's policy: CRLF, 8-bit allowed, no folding that would break DSN fields.
_POLICY = policy.SMTP.clone(max_line_length=998, cte_type="8bit")
#: A message up to this size is returned whole unless the sender asked for headers only.
FULL_RETURN_LIMIT = 50_000
#: Header bytes kept of the original message at most.
HEADER_LIMIT = 64 * 1024
_UTF8_QP = charset.Charset("utf-8")
_UTF8_QP.body_encoding = charset.QP


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """What happened to one recipient, as a DSN reports it (RFC 3464 section 2.3)."""

    address: str
    #: Enhanced status code (RFC 3463), e.g. ``"5.2.2"``.
    status: str
    #: The reply that says why, e.g. ``"552 5.2.2 Mailbox full"``.
    diagnostic: str
    #: ``failed`` or ``delayed`` (also ``delivered``, ``relayed``, ``expanded`` when asked for).
    action: str = "failed"
    #: The ORCPT parameter as given (``"rfc822;bob@example.com"``), if any.
    original: str = ""
    remote_mta: str = ""
    last_attempt: float | None = None
    will_retry_until: float | None = None

    @classmethod
    def for_recipient(
        cls, recipient: SpoolRecipient, status: str, diagnostic: str, action: str = "failed"
    ) -> RecipientReport:
        """A report for a spool recipient, carrying its ORCPT and last attempt."""
        return cls(
            address=recipient.address,
            status=status,
            diagnostic=diagnostic,
            action=action,
            original=recipient.params.get("ORCPT", ""),
            last_attempt=time.time(),
        )


def wants_report(recipient: SpoolRecipient, action: str = "failed") -> bool:
    """Whether the sender asked to hear about ``action`` for this recipient (NOTIFY, RFC 3461).

    Without a NOTIFY parameter failures and delays are reported.
    """
    notify = recipient.params.get("NOTIFY", "").upper()
    if not notify:
        return action in ("failed", "delayed")
    wanted = {item.strip() for item in notify.split(",")}
    if "NEVER" in wanted:
        return False
    return {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS"}.get(action) in wanted


def _ascii(text: str) -> str:
    return " ".join(text.encode("ascii", "replace").decode("ascii").split())


def _address_field(address: str) -> str:
    kind = "rfc822" if address.isascii() else "utf-8"
    return f"{kind}; {_ascii(address) if kind == 'rfc822' else address}"


def _block(fields: Sequence[tuple[str, str]]) -> Message:
    block = Message(policy=_POLICY)
    for name, value in fields:
        if value:
            block[name] = value
    return block


def _status_part(original: SpoolEnvelope, reports: Sequence[RecipientReport], mta: str) -> MIMEBase:
    part = MIMEBase("message", "delivery-status", policy=_POLICY)
    del part["MIME-Version"]
    blocks: list[Message | str] = [
        _block(
            [
                ("Reporting-MTA", f"dns; {mta}"),
                ("Original-Envelope-Id", _ascii(original.params.get("ENVID", ""))),
                ("X-MailMax-Queue-ID", original.id),
                ("Arrival-Date", formatdate(original.received_at, localtime=True)),
            ]
        )
    ]
    for report in reports:
        orcpt = report.original
        if orcpt and ";" not in orcpt:
            orcpt = f"rfc822;{orcpt}"
        blocks.append(
            _block(
                [
                    ("Original-Recipient", _ascii(orcpt)),
                    ("Final-Recipient", _address_field(report.address)),
                    ("Action", report.action),
                    ("Status", report.status),
                    ("Remote-MTA", f"dns; {report.remote_mta}" if report.remote_mta else ""),
                    ("Diagnostic-Code", f"smtp; {_ascii(report.diagnostic)}"),
                    (
                        "Last-Attempt-Date",
                        formatdate(report.last_attempt, localtime=True)
                        if report.last_attempt
                        else "",
                    ),
                    (
                        "Will-Retry-Until",
                        formatdate(report.will_retry_until, localtime=True)
                        if report.will_retry_until
                        else "",
                    ),
                ]
            )
        )
    part.set_payload(blocks)
    return part


def _explanation(reports: Sequence[RecipientReport], mta: str, delayed: bool) -> str:
    if delayed:
        intro = (
            f"This is the mail system at {mta}.\n\n"
            "Your message could not be delivered yet to the recipients below.\n"
            "The mail system will keep trying; you do not need to send it again.\n"
        )
    else:
        intro = (
            f"This is the mail system at {mta}.\n\n"
            "Your message could not be delivered to one or more recipients.\n"
            "A copy of it, or of its header, is attached below. The reasons:\n"
        )
    lines = [f"\n<{r.address}>: {r.diagnostic}" for r in reports]
    return intro + "".join(lines) + "\n"


def _original_part(
    message_path: Path | None, ret: str, size: int, skip: int = 0
) -> MIMEBase | None:
    if message_path is None:
        return None
    try:
        with open(message_path, "rb") as handle:
            handle.seek(skip)  # the trace headers of a local delivery are not the original's
            if ret != "HDRS" and size <= FULL_RETURN_LIMIT:
                raw = handle.read(FULL_RETURN_LIMIT + 1)
                if len(raw) <= FULL_RETURN_LIMIT:
                    whole = MIMEMessage(
                        email.message_from_bytes(raw, policy=policy.compat32), policy=_POLICY
                    )
                    del whole["MIME-Version"]
                    return whole
                handle.seek(skip)
            head = handle.read(HEADER_LIMIT)
    except FileNotFoundError:
        return None
    ends = [i + len(sep) // 2 for sep in (b"\r\n\r\n", b"\n\n") if (i := head.find(sep)) >= 0]
    header = head[: min(ends)] if ends else head
    part = MIMEBase("text", "rfc822-headers", policy=_POLICY)
    del part["MIME-Version"]
    part.set_payload(header.decode("ascii", "surrogateescape"))
    return part


def build_report(
    original: SpoolEnvelope,
    reports: Sequence[RecipientReport],
    *,
    reporting_mta: str,
    message_path: Path | None = None,
) -> bytes:
    """The DSN message (bytes, CRLF line ends) telling ``original.sender`` about ``reports``."""
    if not reports:
        raise ValueError("a delivery status notification needs at least one recipient report")
    delayed = all(r.action == "delayed" for r in reports)
    report = MIMEMultipart("report", report_type="delivery-status", policy=_POLICY)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = original.sender
    report["Subject"] = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    report["Date"] = formatdate(localtime=True)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    text = MIMEText(_explanation(reports, reporting_mta, delayed), "plain", policy=_POLICY)
    text.set_charset(_UTF8_QP)
    del text["MIME-Version"]
    report.attach(text)
    report.attach(_status_part(original, reports, reporting_mta))
    ret = original.params.get("RET", "").upper()
    returned = _original_part(message_path, ret, original.size, original.trace_bytes)
    if returned is not None:
        report.attach(returned)
    return report.as_bytes(policy=_POLICY)


def make_bounce(
    original: SpoolEnvelope,
    reports: Sequence[RecipientReport],
    *,
    queue_id: str,
    reporting_mta: str,
    message_path: Path | None = None,
    recipient: SpoolRecipient | None = None,
) -> tuple[SpoolEnvelope, bytes] | None:
    """The envelope and message of the DSN for ``original``, ready for ``Spool.accept``.

    Returns ``None`` when no DSN may be sent: the original came from the null sender (never a
    bounce to a bounce) or no recipient asked for one (NOTIFY). ``recipient`` is the DSN's
    recipient as the caller classified it (local or relay); by default the original sender
    as a relay recipient.
    """
    if not original.sender:
        return None
    wanted = [r for r in reports if _wanted(original, r)]
    if not wanted:
        return None
    message = build_report(original, wanted, reporting_mta=reporting_mta, message_path=message_path)
    envelope = SpoolEnvelope(
        id=queue_id,
        sender="",
        recipients=[recipient or SpoolRecipient(original.sender, kind="relay")],
        received_at=time.time(),
        helo=reporting_mta,
        params={"BODY": "8BITMIME"} if not message.isascii() else {},
    )
    return envelope, message


def _wanted(original: SpoolEnvelope, report: RecipientReport) -> bool:
    for recipient in original.recipients:
        if recipient.address == report.address:
            return wants_report(recipient, report.action)
    return report.action in ("failed", "delayed")
