"""The queue's notices to senders: bounces, and warnings that delivery goes on.

Both are RFC 3464 delivery status notifications built by :mod:`mailmax.core.queue.bounce`
and queued through the spool like any other message, from the null sender. A message from
the null sender never gets one (never a bounce to a bounce). With ``[queue]
bounce_copy_to_postmaster`` every bounce also goes to the postmaster.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.config import Settings
from mailmax.core.queue import bounce, overlimit
from mailmax.core.queue.bounce import RecipientReport
from mailmax.core.queue.local import classify
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")

_STATUS_RE = re.compile(r"^\d{3} ([245]\.\d{1,3}\.\d{1,3})\b")


def status_of(diagnostic: str, default: str = "5.0.0") -> str:
    """The enhanced status code in an SMTP-style reply (``"552 5.2.2 ..."`` -> ``"5.2.2"``)."""
    match = _STATUS_RE.match(diagnostic)
    return match.group(1) if match else default


def remote_of(recipient: SpoolRecipient) -> str:
    """The host named in a remote diagnostic (``"... (at mx.example.org[192.0.2.1]:25)"``)."""
    match = re.search(r"\(at ([^)\s\[]+)", recipient.last_error)
    return match.group(1) if match else ""


class Notifier:
    """Builds and queues bounces and delay warnings."""

    def __init__(
        self,
        *,
        spool: Spool,
        directory: Any,
        settings: Settings,
        in_thread: Callable[..., defer.Deferred[Any]],
    ) -> None:
        self.spool = spool
        self.directory = directory
        self.settings = settings
        self.in_thread = in_thread
        self.hostname = settings.server.hostname

    @property
    def postmaster(self) -> str:
        """Where bounce copies go."""
        return self.settings.queue.postmaster or f"postmaster@{self.hostname}"

    async def bounce(
        self, envelope: SpoolEnvelope, path: Path, failures: Sequence[SpoolRecipient]
    ) -> bool:
        """Queue one DSN for ``failures``; False when it could not be queued (try later)."""
        if not envelope.sender:
            log.info(
                "queue {queue_id}: no bounce for {count} failed recipient(s): the sender "
                "is the null sender",
                queue_id=envelope.id,
                count=len(failures),
            )
            return True
        reports = [
            RecipientReport(
                address=r.address,
                status=status_of(r.last_error),
                diagnostic=r.last_error,
                original=r.params.get("ORCPT", ""),
                remote_mta=remote_of(r),
                last_attempt=time.time(),
            )
            for r in failures
        ]
        copy = self.postmaster if self.settings.queue.bounce_copy_to_postmaster else None
        return await self._send(envelope, path, reports, "bounce", copy)

    async def over_limit(self, notice: overlimit.Notice) -> bool:
        """Queue an over-limit notice to the user (from the null sender); False on failure."""
        try:
            data = overlimit.message(notice, self.hostname)
            target = await self.in_thread(classify, self.directory, notice.mailbox)
            envelope = SpoolEnvelope(
                id=self.spool.new_id(),
                sender="",
                recipients=[target],
                received_at=time.time(),
                size=len(data),
            )
            notice_id = await self.spool.accept(envelope, [data])
        except Exception:
            log.failure("cannot queue the over-limit notice to {to}", to=notice.mailbox)
            return False
        log.info(
            "over-limit notice {notice_id} to {to}: {usage} of {limit} bytes used",
            notice_id=notice_id,
            to=notice.mailbox,
            usage=notice.usage,
            limit=notice.limit,
        )
        return True

    async def warn(
        self,
        envelope: SpoolEnvelope,
        path: Path,
        delayed: Sequence[tuple[SpoolRecipient, float | None]],
    ) -> bool:
        """Queue a "delayed" DSN: these recipients moved to the soft-error queue."""
        if not envelope.sender or not delayed:
            return True
        reports = [
            RecipientReport(
                address=r.address,
                status=status_of(r.last_error, "4.0.0"),
                diagnostic=r.last_error,
                action="delayed",
                original=r.params.get("ORCPT", ""),
                remote_mta=remote_of(r),
                will_retry_until=until,
            )
            for r, until in delayed
        ]
        return await self._send(envelope, path, reports, "delay warning", None)

    async def _send(
        self,
        envelope: SpoolEnvelope,
        path: Path,
        reports: list[RecipientReport],
        what: str,
        copy_to: str | None,
    ) -> bool:
        try:
            target = await self.in_thread(classify, self.directory, envelope.sender)
            made = await self.in_thread(
                bounce.make_bounce,
                envelope,
                reports,
                queue_id=self.spool.new_id(),
                reporting_mta=self.hostname,
                message_path=path,
                recipient=target,
            )
            if made is None:
                return True
            notice, message = made
            if copy_to and copy_to.lower() != envelope.sender.lower():
                notice.recipients.append(await self.in_thread(classify, self.directory, copy_to))
            notice_id = await self.spool.accept(notice, [message])
        except Exception:
            log.failure(
                "queue {queue_id}: cannot queue the {what}", queue_id=envelope.id, what=what
            )
            return False
        log.info(
            "queue {queue_id}: {what} {notice_id} to {to} for {rcpts}",
            queue_id=envelope.id,
            what=what,
            notice_id=notice_id,
            to=[r.address for r in notice.recipients],
            rcpts=[r.address for r in reports],
        )
        return True
