"""Doing what matched rules ask for one recipient's copy, in the server.

Forwarded copies reuse the forwarding plugin's sender rewriting (SRS) and copy ids, so a retried
delivery never queues a copy twice; a copy is never forwarded to an address that already got the
message, nor to the mailbox itself, nor again by a mailbox it already passed through (two users
forwarding to each other cannot loop).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from mailmax.core.pluginhost.outcomes import DeliveryDecision, deliver_to, discard
from mailmax.core.spool.writer import QUEUE_ID
from mailmax.plugins.forwarding import Settings as ForwardingSettings
from mailmax.plugins.forwarding import copy_id, forward_sender
from mailmax.plugins.rules import changes
from mailmax.plugins.rules.engine import Plan
from mailmax.plugins.rules.message import MessageView
from mailmax.plugins.rules.model import reply_file

#: Where copies without attachments wait to be stored (removed a day after their last use).
CHANGED_FOLDER = Path("rules") / "changed"
KEEP_CHANGED_SECONDS = 86400


def _forwarding_settings(host: Any) -> ForwardingSettings:
    plugins = getattr(getattr(host, "settings", None), "plugins", None)
    table = getattr(plugins, "settings", {}).get("forwarding", {}) if plugins else {}
    try:
        return ForwardingSettings(**table)
    except ValueError:
        return ForwardingSettings()


def _passed_through(message_path: str, mailbox: str) -> bool:
    name = Path(message_path).name
    tag = copy_id("x", mailbox, "")[2:]
    return f"-r{tag}" in name or f"-s{tag}" in name


async def forward(
    context: Any, mailbox: str, envelope: Any, message_path: str, targets: list[str]
) -> None:
    """Queue copies of the message for ``targets`` (SRS sender for other servers)."""
    host = context.host
    known = {r.address.lower() for r in envelope.recipients}
    known |= {r.mailbox.lower() for r in envelope.recipients if r.mailbox}
    wanted = [t for t in targets if t != mailbox.lower() and t not in known]
    if not wanted:
        return
    if _passed_through(message_path, mailbox):
        context.log.warn(
            "{mailbox}: a copy that this mailbox forwarded came back; not forwarded again",
            mailbox=mailbox,
        )
        return
    local = [t for t in wanted if host.is_local(t)]
    remote = [t for t in wanted if t not in local]
    for mark, addresses in (("r", local), ("s", remote)):
        if not addresses:
            continue
        queue_id = copy_id(message_path, mailbox, mark)
        if not QUEUE_ID.fullmatch(queue_id):
            context.log.warn(
                "{mailbox}: the message went through too many forwards; not forwarded again",
                mailbox=mailbox,
            )
            return
        sender = envelope.sender
        if mark == "s":
            sender = forward_sender(host, sender, mailbox, _forwarding_settings(host))
        await host.submit(sender, addresses, message_path, queue_id=queue_id)
        context.metrics.increment("forwarded")


async def respond(
    context: Any,
    mailbox: str,
    envelope: Any,
    view: MessageView,
    label: str,
    kind: str,
    value: str,
    config: Any,
) -> None:
    """Answer the sender with the rule's text or file, through the auto-responder's code (RFC
    3834: never to lists, automatic mail or the null sender; once per sender in
    ``reply_days``, remembered per rule)."""
    from mailmax.plugins.autoreply.reply import AutoReply, send_auto_reply

    if kind == "respond-file":
        if not config.reply_folder:
            context.log.error("{rule}: replies from files are off; no reply", rule=label)
            return
        reply = AutoReply(text_file=reply_file(config.reply_folder, value), days=config.reply_days)
    else:
        reply = AutoReply(text=value, days=config.reply_days)
    addresses = [
        r.address for r in envelope.recipients if (r.mailbox or "").lower() == mailbox.lower()
    ]
    outcome = await send_auto_reply(
        context.host,
        message=view.data,
        sender=envelope.sender,
        recipient=mailbox,
        reply=reply,
        addresses=addresses,
        memory_scope="rule-" + hashlib.sha1(label.encode()).hexdigest()[:12],
    )
    context.log.info(
        "{rule}: auto-reply to <{sender}>: {reason}",
        rule=label,
        sender=envelope.sender,
        reason=outcome.reason,
    )
    if outcome.sent:
        context.metrics.increment("replies")


def write_changed(data_dir: Path, name: str, data: bytes) -> str:
    """Blocking: the file holding a changed copy, written and fsynced once, touched at each use."""
    folder = data_dir / CHANGED_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.eml"
    if path.exists():
        os.utime(path)
        return str(path)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return str(path)


def purge_changed(data_dir: Path, now: float) -> int:
    """Blocking: remove changed copies unused for a day; how many."""
    folder = data_dir / CHANGED_FOLDER
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if now - path.stat().st_mtime > KEEP_CHANGED_SECONDS:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def outcome_text(plan: Plan) -> str:
    """What becomes of the copy, in words (for notes)."""
    if plan.discard:
        return "discarded"
    where = f"stored in {plan.folder or 'INBOX'}"
    return where + (", its attachments removed" if plan.strip_attachments else "")


def decision(plan: Plan) -> DeliveryDecision | None:
    """Where the copy goes when no attachment is to be removed: discarded, or stored in the
    plan's folder (None: the INBOX, as without rules)."""
    reason = "rule " + "; ".join(plan.matched)[:300]
    if plan.discard:
        return discard(reason)
    folder = plan.folder or "INBOX"
    if folder == "INBOX":
        return None
    return deliver_to(folder, reason)


async def decide(
    context: Any,
    in_thread: Any,
    mailbox: str,
    message_path: str,
    view: MessageView,
    plan: Plan,
) -> DeliveryDecision | None:
    """Where the copy goes: discarded, or stored (changed or not) in the plan's folder."""
    if plan.strip_attachments and not plan.discard:
        stripped, count = changes.strip_attachments(view.data)
        if count:
            name = copy_id(message_path, mailbox, "a")
            if QUEUE_ID.fullmatch(name):
                source = await in_thread(write_changed, context.host.data_dir, name, stripped)
                context.metrics.increment("attachments_removed", count)
                reason = "rule " + "; ".join(plan.matched)[:300]
                return deliver_to(plan.folder or "INBOX", reason, source=source)
    return decision(plan)


def now_seconds(context: Any) -> float:
    """The host clock's time (the reactor's; a test's Clock)."""
    clock = getattr(context.host, "clock", None)
    return clock.seconds() if clock is not None else time.time()
