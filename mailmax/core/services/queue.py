"""The queue as administrators see it: queued messages, where they wait and why, and who may
act on them (the CLI and the API; the changes themselves are carried out by the queue runner,
see :meth:`mailmax.core.queue.admin.QueueAdmin.control`)."""

from __future__ import annotations

import datetime
import email.parser
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmax.core.directory.errors import NotFound
from mailmax.core.queue.control import WAITING, Request, domain_of, read_queue
from mailmax.core.services.actor import Actor, Forbidden

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.spool.envelope import SpoolEnvelope

#: Header fields ``queue show`` gives from the message.
SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


def directories(settings: Settings) -> tuple[Path, Path]:
    """The queue directory and the hold directory of ETRN domains."""
    return settings.spool_dir, settings.path(settings.queue.hold_dir)


def when(timestamp: float) -> str | None:
    """A Unix time as ISO 8601 UTC (None for 0)."""
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def record(envelope: SpoolEnvelope, where: str, now: float) -> dict[str, Any]:
    """Everything about one queued message."""
    waiting = [r for r in envelope.recipients if r.state in WAITING]
    held = where == "hold"
    if held:
        state = "held for ETRN"
    elif not waiting:
        state = "bouncing" if any(r.state == "failed" for r in envelope.recipients) else "done"
    elif any(r.state == "deferred" for r in waiting):
        state = f"deferred ({max(r.attempts for r in waiting)} attempts)"
    else:
        state = "pending"
    next_try = min((r.next_attempt for r in waiting), default=0.0)
    reason = next((r.last_error for r in waiting if r.last_error), "")
    return {
        "id": envelope.id,
        "where": where,
        "received": when(envelope.received_at),
        "age_seconds": int(now - envelope.received_at),
        "size": envelope.size,
        "sender": envelope.sender or "<>",
        "client_ip": envelope.client_ip,
        "state": state,
        "next_attempt": None if held else when(next_try) if next_try > now else "now",
        "reason": reason,
        "recipients": [
            {
                "address": r.address,
                "kind": r.kind,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": when(r.next_attempt) if r.state in WAITING else None,
                "last_error": r.last_error,
            }
            for r in envelope.recipients
        ],
    }


def messages(settings: Settings, where: str | None = None) -> list[tuple[SpoolEnvelope, str]]:
    """The queued messages (of ``queue`` or ``hold`` only, when given), oldest first."""
    queue_dir, hold_dir = directories(settings)
    found = []
    for directory, name in ((queue_dir, "queue"), (hold_dir, "hold")):
        if where in (None, name):
            found += [(envelope, name) for envelope in read_queue(directory)]
    return found


def _concerns(actor: Actor, envelope: SpoolEnvelope) -> bool:
    return any(actor.may_manage(domain_of(r.address)) for r in envelope.recipients)


def _visible(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with only the recipients ``actor`` may see."""
    if actor.system:
        return data
    mine = [r for r in data["recipients"] if actor.may_manage(domain_of(r["address"]))]
    return {**data, "recipients": mine}


def list_queue(
    settings: Settings,
    actor: Actor,
    *,
    domain: str | None = None,
    deferred: bool = False,
    held: bool = False,
) -> list[dict[str, Any]]:
    """Queued messages ``actor`` may see (with a recipient in their domains), oldest first."""
    if domain:
        actor.require_domain(domain)
    now = time.time()
    found = []
    for envelope, where in messages(settings, "hold" if held else None):
        waiting = [r for r in envelope.recipients if r.state in WAITING]
        if domain and not any(domain_of(r.address) == domain.lower() for r in waiting):
            continue
        if deferred and not any(r.state == "deferred" for r in waiting):
            continue
        if _concerns(actor, envelope):
            found.append(_visible(actor, record(envelope, where, now)))
    return found


def headers(path: Path) -> dict[str, str]:
    """The shown header fields of the message file at ``path``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return {}
    message = email.parser.BytesHeaderParser().parsebytes(head)
    return {name: str(message[name]) for name in SHOWN_HEADERS if message[name] is not None}


def show(settings: Settings, actor: Actor, queue_id: str) -> dict[str, Any]:
    """One queued message with its header fields; NotFound also for another domain's mail."""
    found = [(e, where) for e, where in messages(settings) if e.id == queue_id]
    if not found or not _concerns(actor, found[0][0]):
        raise NotFound(f"no queued message {queue_id}")
    envelope, where = found[0]
    data = _visible(actor, record(envelope, where, time.time()))
    queue_dir, hold_dir = directories(settings)
    data["headers"] = headers((queue_dir if where == "queue" else hold_dir) / "msg" / envelope.id)
    return data


def check_request(settings: Settings, actor: Actor, request: Request) -> None:
    """Refuse a queue action ``actor`` may not take: ``all`` is for system administrators;
    a domain administrator retries mail waiting for their domains and deletes or bounces
    only mail all of whose recipients are theirs."""
    if actor.system:
        return
    if request.all:
        actor.require_system("acting on the whole queue")
    if request.domain:
        actor.require_domain(request.domain)
    if request.ids:
        envelopes = {e.id: e for e, _ in messages(settings) if e.id in request.ids}
        for queue_id in request.ids:
            envelope = envelopes.get(queue_id)
            if envelope is None or not _concerns(actor, envelope):
                raise NotFound(f"no queued message {queue_id}")
            owned = all(actor.may_manage(domain_of(r.address)) for r in envelope.recipients)
            if request.action != "retry" and not owned:
                raise Forbidden(
                    f"message {queue_id} also goes to other domains; only a system "
                    f"administrator may {request.action} it"
                )
