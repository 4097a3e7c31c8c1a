"""Automatic replies by the rules of RFC 3834: whether to answer, the reply, and queueing it.

The one entry point is :func:`send_auto_reply`; the auto-responder and the rules' auto-respond
action both use it::

    from mailmax.plugins.autoreply.reply import AutoReply, send_auto_reply

    outcome = await send_auto_reply(
        host,
        message=message_path,            # the incoming message (a path, bytes or a Message)
        sender=envelope.sender,          # its envelope sender (the Return-Path)
        recipient=mailbox,               # the user it was delivered to
        addresses=[...],                 # the user's other addresses (aliases) it came through
        reply=AutoReply(subject="Away", text="Back on Monday."),
    )
    # outcome.sent, outcome.reason, outcome.queue_id

A reply goes to the envelope sender from the null sender (``MAIL FROM:<>``) through the
outbound queue, with ``Auto-Submitted: auto-replied``, ``In-Reply-To`` and ``References``.
No reply goes to the null sender, to the user's own addresses, to ``owner-*``, ``*-request``
or ``MAILER-DAEMON`` senders, to mailing-list mail (``List-*`` headers, ``Precedence: bulk``,
``list`` or ``junk``), to automatic mail (``Auto-Submitted`` other than ``no``), or when none of
the user's addresses is in ``To``/``Cc``/``Bcc`` (or their ``Resent-`` forms). Each sender gets
at most one reply per :attr:`AutoReply.days` per user (remembered in the directory database, so
across restarts and by every node sharing it).
"""

from __future__ import annotations

import email.header
import email.message
import email.policy
import email.utils
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

#: The namespace of the once-per-N-days memory in the plugin key-value store.
MEMORY_PLUGIN = "autoreply"
#: Longest subject, real name or from address, in characters.
MAX_HEADER_TEXT = 500
#: Longest reply text (or text file), in bytes.
MAX_TEXT_BYTES = 64 * 1024
#: Most bytes of the incoming message read to find its headers.
MAX_HEADER_BYTES = 256 * 1024
#: Longest In-Reply-To / References value kept, in characters.
MAX_REFERENCES = 900

_LIST_HEADERS = (
    "List-Id",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Owner",
    "List-Archive",
)
_BULK = frozenset({"bulk", "list", "junk"})
_ADDRESSED_HEADERS = ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")


def check_header_text(what: str, value: str) -> str:
    """``value`` for the header field ``what``, or ValueError when it has a line break."""
    if not isinstance(value, str):
        raise ValueError(f"the {what} must be text")
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"the {what} must be one line (no line breaks)")
    if len(value) > MAX_HEADER_TEXT:
        raise ValueError(f"the {what} is longer than {MAX_HEADER_TEXT} characters")
    return value


def check_address(what: str, value: str) -> str:
    """``value`` as an address like name@example.com (or ""), or ValueError saying why not."""
    check_header_text(what, value)
    if value and (
        value.count("@") != 1
        or not value.split("@")[0]
        or "." not in value.split("@")[1]
        or any(c.isspace() or c in '<>()[],;:"\\' for c in value)
    ):
        raise ValueError(f"the {what} {value!r} is not an address like name@example.com")
    return value


@dataclass(frozen=True)
class AutoReply:
    """What an automatic reply says.

    ``subject`` (empty: ``Auto: `` and the incoming subject), ``text`` or ``text_file`` (a
    UTF-8 file read when the reply is made; only a path the administrator chose), the
    ``from_address`` (empty: the recipient's address) and its ``real_name``, and ``days``: one
    reply per sender and user within that many days. Line breaks in the subject, name or
    address are refused (ValueError), so no field can add a header.
    """

    subject: str = ""
    text: str = ""
    text_file: str = ""
    from_address: str = ""
    real_name: str = ""
    days: int = 7

    def __post_init__(self) -> None:
        check_header_text("subject", self.subject)
        check_header_text("real name", self.real_name)
        check_address("from address", self.from_address)
        check_header_text("text file", self.text_file)
        if len(self.text.encode()) > MAX_TEXT_BYTES:
            raise ValueError(f"the reply text is over {MAX_TEXT_BYTES} bytes")
        if isinstance(self.days, bool) or not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"days must be a whole number of at least 1, not {self.days!r}")

    def body(self) -> str:
        """The reply text (read from ``text_file`` when there is one; blocking)."""
        if not self.text_file:
            return self.text
        with open(self.text_file, "rb") as handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise ValueError(f"{self.text_file} is over {MAX_TEXT_BYTES} bytes")
        return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class ReplyOutcome:
    """What :func:`send_auto_reply` did: ``sent`` (and the reply's ``queue_id``) or why not."""

    sent: bool
    reason: str
    queue_id: str = ""


def read_headers(message: email.message.Message | bytes | str | Path) -> email.message.Message:
    """The headers of the incoming message (a Message, its bytes, or its file; blocking)."""
    if isinstance(message, email.message.Message):
        return message
    if isinstance(message, str | Path):
        with open(message, "rb") as handle:
            message = handle.read(MAX_HEADER_BYTES)
    head, sep, _ = message[:MAX_HEADER_BYTES].partition(b"\n\r\n")
    if not sep:
        head, sep, _ = message[:MAX_HEADER_BYTES].partition(b"\n\n")
    return BytesParser(policy=email.policy.compat32).parsebytes(head + b"\n", headersonly=True)


def _one_line(value: Any) -> str:
    return " ".join(str(value or "").split())


def _decoded(value: Any) -> str:
    """A header value with its RFC 2047 encoded words decoded, on one line."""
    try:
        return _one_line(email.header.make_header(email.header.decode_header(_one_line(value))))
    except (LookupError, ValueError, UnicodeError):
        return _one_line(value)


def _addresses_in(headers: email.message.Message, names: Sequence[str]) -> set[str]:
    values = [str(v) for name in names for v in headers.get_all(name, [])]
    return {address.lower() for _, address in email.utils.getaddresses(values) if address}


def reason_not_to_reply(
    headers: email.message.Message,
    sender: str,
    recipient: str,
    addresses: Sequence[str] = (),
) -> str:
    """Why RFC 3834 says not to answer this message, or ``""`` when a reply may go.

    ``sender`` is the envelope sender, ``recipient`` the user, ``addresses`` the user's other
    addresses (the ones the mail may have been sent to).
    """
    own = {a.lower() for a in (recipient, *addresses) if a}
    if not sender:
        return "the sender is the null sender"
    if sender.lower() in own:
        return "the sender is the user's own address"
    local = sender.rpartition("@")[0].lower()
    if local.startswith("owner-") or local.endswith("-request"):
        return "the sender is a mailing list's address"
    if local in ("mailer-daemon", "mailer_daemon"):
        return "the sender is a mailer daemon"
    auto = _one_line(headers.get("Auto-Submitted")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"the message is automatic (Auto-Submitted: {auto})"
    if any(headers.get(name) is not None for name in _LIST_HEADERS):
        return "the message comes from a mailing list"
    if _one_line(headers.get("Precedence")).lower() in _BULK:
        return "the message is bulk or list mail (Precedence)"
    if not own & _addresses_in(headers, _ADDRESSED_HEADERS):
        return "the user is not addressed directly (not in To or Cc)"
    return ""


def build_reply(
    headers: email.message.Message, sender: str, recipient: str, reply: AutoReply
) -> email.message.EmailMessage:
    """The reply to the message with ``headers`` from ``sender`` (blocking: may read a file)."""
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    from_address = reply.from_address or recipient
    message["From"] = email.utils.formataddr((reply.real_name, from_address))
    message["To"] = sender
    subject = reply.subject or f"Auto: {_decoded(headers.get('Subject'))[:MAX_HEADER_TEXT]}"
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    original = _one_line(headers.get("Message-ID"))
    if original and len(original) <= MAX_REFERENCES and original.startswith("<"):
        message["In-Reply-To"] = original
        earlier = _one_line(headers.get("References")).split()
        chain = [*earlier, original]
        while len(" ".join(chain)) > MAX_REFERENCES and len(chain) > 1:
            chain.pop(0)  # RFC 5322: the oldest references go first
        message["References"] = " ".join(chain)
    message.set_content(reply.body())
    return message


class ReplyMemory:
    """When each sender was last answered for each user: the plugin key-value store of
    ``autoreply``, entries expiring after the reply's days.

    ``claim`` is atomic (one increment), so two deliveries at once send one reply.
    """

    def __init__(self, host: Any) -> None:
        self.kv = host.kv(MEMORY_PLUGIN)

    @staticmethod
    def key(user: str, sender: str, scope: str = "") -> str:
        """The entry of (``user``, ``sender``); ``scope`` keeps another responder's apart."""
        digest = hashlib.sha256(f"{user.lower()}\0{sender.lower()}".encode()).hexdigest()
        return f"sent:{scope}:{digest}" if scope else f"sent:{digest}"

    async def claim(self, user: str, sender: str, days: int, scope: str = "") -> bool:
        """True when ``sender`` was not answered for ``user`` within ``days`` (now claimed)."""
        count = await self.kv.increment(self.key(user, sender, scope), ttl=days * 86400)
        return count == 1

    async def release(self, user: str, sender: str, scope: str = "") -> None:
        """Forget a claim whose reply could not be queued (the next message tries again)."""
        await self.kv.delete(self.key(user, sender, scope))


def _prepare(
    message: email.message.Message | bytes | str | Path,
    sender: str,
    recipient: str,
    reply: AutoReply,
    addresses: Sequence[str],
) -> str | email.message.EmailMessage:
    """Blocking: why not to reply, or the reply (reads the message and any text file)."""
    headers = read_headers(message)
    why = reason_not_to_reply(headers, sender, recipient, addresses)
    return why or build_reply(headers, sender, recipient, reply)


def _in_thread(host: Any, function: Any, *args: Any) -> defer.Deferred[Any]:
    reactor = getattr(host, "reactor", None)
    if reactor is None:  # a host without a reactor (a test harness) runs it here
        return defer.maybeDeferred(function, *args)
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)


async def send_auto_reply(
    host: Any,
    *,
    message: email.message.Message | bytes | str | Path,
    sender: str,
    recipient: str,
    reply: AutoReply,
    addresses: Sequence[str] = (),
    memory_scope: str = "",
) -> ReplyOutcome:
    """Answer ``message`` (to ``recipient``, from the envelope ``sender``) with ``reply``
    when RFC 3834 allows it and ``sender`` had no reply from this user within ``reply.days``.

    ``host`` is the plugin host (its ``send`` service and key-value store are used);
    ``addresses`` are the user's other addresses; ``memory_scope`` keeps a separate
    once-per-N-days memory (a rule's own, say). The reply is queued from the null sender; the
    result says whether it was and why (never raises for a message it will not answer; a
    reply that cannot be queued is reported with ``sent=False`` and the error).
    """
    try:
        decided = await _in_thread(host, _prepare, message, sender, recipient, reply, addresses)
    except Exception as exc:  # an unreadable message or text file, a header email refuses
        return ReplyOutcome(False, f"the reply cannot be made: {type(exc).__name__}: {exc}")
    if isinstance(decided, str):
        return ReplyOutcome(False, decided)
    answer = decided
    memory = ReplyMemory(host)
    if not await memory.claim(recipient, sender, reply.days, memory_scope):
        return ReplyOutcome(False, f"the sender was answered in the last {reply.days} day(s)")
    try:
        queue_id = await host.send("", [sender], answer)
    except Exception as exc:
        await memory.release(recipient, sender, memory_scope)
        return ReplyOutcome(False, f"the reply cannot be queued: {exc}")
    return ReplyOutcome(True, "answered", queue_id)
