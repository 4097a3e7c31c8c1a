"""``mailmax queue ...``: see why mail waits and act on it.

``list`` and ``show`` read the queue directory (and the hold directory of ETRN domains);
``retry``, ``delete``, ``bounce`` and ``flush`` change it: directly when no server runs, else
through the running server's queue runner, which carries them out between deliveries.
"""

from __future__ import annotations

import datetime
import email.parser
import time
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options, confirm_or_refuse
from mailmax.core.cli.output import Column
from mailmax.core.queue.control import (
    WAITING,
    ControlError,
    Request,
    Result,
    apply_offline,
    describe,
    domain_of,
    locked,
    read_queue,
    submit,
)
from mailmax.core.spool.envelope import SpoolEnvelope

#: Header fields ``queue show`` prints from the message.
SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")

COLUMNS = [
    Column("id", "ID"),
    Column("where", "WHERE"),
    Column("age", "AGE"),
    Column("size", "SIZE"),
    Column("sender", "FROM"),
    Column("to", "TO"),
    Column("state", "STATE"),
    Column("next", "NEXT TRY"),
    Column("reason", "REASON"),
]


def _directories() -> tuple[Path, Path]:
    settings = app().settings()
    return settings.spool_dir, settings.path(settings.queue.hold_dir)


def _when(timestamp: float) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _record(envelope: SpoolEnvelope, where: str, now: float) -> dict[str, Any]:
    """Everything about one queued message, as ``list --json`` and ``show`` give it."""
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
        "received": _when(envelope.received_at),
        "age_seconds": int(now - envelope.received_at),
        "size": envelope.size,
        "sender": envelope.sender or "<>",
        "client_ip": envelope.client_ip,
        "state": state,
        "next_attempt": None if held else _when(next_try) if next_try > now else "now",
        "reason": reason,
        "recipients": [
            {
                "address": r.address,
                "kind": r.kind,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": _when(r.next_attempt) if r.state in WAITING else None,
                "last_error": r.last_error,
            }
            for r in envelope.recipients
        ],
    }


def _row(record: dict[str, Any], now: float) -> dict[str, Any]:
    recipients = [r for r in record["recipients"] if r["state"] in WAITING] or record["recipients"]
    first = recipients[0]["address"] if recipients else ""
    more = f" +{len(recipients) - 1}" if len(recipients) > 1 else ""
    next_try = record["next_attempt"]
    if next_try not in (None, "now"):
        moment = datetime.datetime.fromisoformat(next_try).timestamp()
        next_try = f"in {_span(moment - now)}"
    return {
        **record,
        "age": _span(record["age_seconds"]),
        "to": first + more,
        "next": next_try or "-",
        "reason": record["reason"][:60],
    }


def _messages(where: str | None = None) -> list[tuple[SpoolEnvelope, str]]:
    queue_dir, hold_dir = _directories()
    found = []
    for directory, name in ((queue_dir, "queue"), (hold_dir, "hold")):
        if where in (None, name):
            found += [(envelope, name) for envelope in read_queue(directory)]
    return found


def _act(request: Request) -> Result:
    queue_dir, hold_dir = _directories()
    try:
        with locked(queue_dir) as queue_free, locked(hold_dir) as hold_free:
            if queue_free and hold_free:
                result = apply_offline(queue_dir, hold_dir, request)
                result.message = describe(request.action, len(result.ids), [])
                if request.action != "delete" and result.ids:
                    result.message += " (when the server runs)"
                offline = True
            else:
                offline = False
        if not offline:
            result = submit(queue_dir, request)
    except ControlError as exc:
        raise CLIError(str(exc)) from None
    if request.ids and not result.ids:
        raise CLIError(
            f"no queued message {', '.join(request.ids)} waits; see `mailmax queue list`"
        )
    return result


def _done(result: Result, request: Request) -> None:
    app().out.done(result.message, action=request.action, ids=result.ids, released=result.released)


# ---------------------------------------------------------------------- commands
@click.group("queue")
def queue_group() -> None:
    """See the mail waiting to be delivered, and why; retry, delete or bounce it."""


@queue_group.command("list")
@click.option("--domain", metavar="DOMAIN", help="Only mail waiting for recipients at DOMAIN.")
@click.option("--deferred", is_flag=True, help="Only mail that failed at least once.")
@click.option("--held", is_flag=True, help="Only mail held for ETRN domains.")
@common_options
def list_command(domain: str | None, deferred: bool, held: bool) -> None:
    """List queued messages, oldest first: where each waits, its next try and why."""
    now = time.time()
    records = []
    for envelope, where in _messages("hold" if held else None):
        waiting = [r for r in envelope.recipients if r.state in WAITING]
        if domain and not any(domain_of(r.address) == domain.lower() for r in waiting):
            continue
        if deferred and not any(r.state == "deferred" for r in waiting):
            continue
        records.append(_record(envelope, where, now))
    out = app().out
    if out.as_json:
        out.json(records)
        return
    out.table([_row(r, now) for r in records], COLUMNS, empty="the queue is empty")


@queue_group.command("show")
@click.argument("queue_id", metavar="ID")
@common_options
def show_command(queue_id: str) -> None:
    """Show one queued message: envelope, each recipient's state and last error, headers."""
    now = time.time()
    found = [(e, where) for e, where in _messages() if e.id == queue_id]
    if not found:
        raise CLIError(f"no queued message {queue_id}; see `mailmax queue list`")
    envelope, where = found[0]
    record = _record(envelope, where, now)
    queue_dir, hold_dir = _directories()
    path = (queue_dir if where == "queue" else hold_dir) / "msg" / envelope.id
    record["headers"] = _headers(path)
    out = app().out
    if out.as_json:
        out.json(record)
        return
    recipients = record.pop("recipients")
    headers = record.pop("headers")
    out.record(record)
    for r in recipients:
        attempts = f", {r['attempts']} attempts" if r["attempts"] else ""
        next_try = f", next {r['next_attempt']}" if r["next_attempt"] else ""
        error = f": {r['last_error']}" if r["last_error"] else ""
        click.echo(f"  to {r['address']} ({r['kind']}, {r['state']}{attempts}{next_try}){error}")
    for name, value in headers.items():
        click.echo(f"  {name}: {value}")


def _headers(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return {}
    message = email.parser.BytesHeaderParser().parsebytes(head)
    return {name: str(message[name]) for name in SHOWN_HEADERS if message[name] is not None}


def _targets(ids: tuple[str, ...], all_: bool, domain: str | None) -> dict[str, Any]:
    if ids and (all_ or domain):
        raise CLIError("give message ids, or --all, or --domain, not several")
    if not (ids or all_ or domain):
        raise CLIError("name the messages: ID..., --all or --domain DOMAIN")
    return {"ids": ids, "all": all_, "domain": (domain or "").lower()}


@queue_group.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Every waiting message.")
@click.option("--domain", metavar="DOMAIN", help="Mail waiting for DOMAIN (also held ETRN mail).")
@common_options
def retry_command(ids: tuple[str, ...], all_: bool, domain: str | None) -> None:
    """Try waiting messages now instead of at their next scheduled attempt."""
    request = Request("retry", **_targets(ids, all_, domain))
    _done(_act(request), request)


@queue_group.command("flush")
@common_options
def flush_command() -> None:
    """Try every waiting message now (held ETRN mail stays held)."""
    request = Request("retry", all=True)
    _done(_act(request), request)


@queue_group.command("delete")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
def delete_command(ids: tuple[str, ...], yes: bool) -> None:
    """Delete messages from the queue without telling the sender."""
    confirm_or_refuse(f"delete {len(ids)} queued message(s) without a bounce", yes)
    request = Request("delete", ids=ids)
    _done(_act(request), request)


@queue_group.command("bounce")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
def bounce_command(ids: tuple[str, ...], yes: bool) -> None:
    """Return messages to their senders now (a delivery status notification)."""
    confirm_or_refuse(f"return {len(ids)} queued message(s) to the sender", yes)
    request = Request("bounce", ids=ids)
    _done(_act(request), request)
