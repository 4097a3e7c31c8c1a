"""``mailmax queue ...``: see why mail waits and act on it.

``list`` and ``show`` read the queue directory (and the hold directory of ETRN domains);
``retry``, ``delete``, ``bounce`` and ``flush`` change it: directly when no server runs, else
through the running server's queue runner, which carries them out between deliveries.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options, confirm_or_refuse
from mailmax.core.cli.output import Column
from mailmax.core.directory.errors import NotFound
from mailmax.core.queue.control import (
    WAITING,
    ControlError,
    Request,
    Result,
    apply_offline,
    describe,
    locked,
    submit,
)
from mailmax.core.services import queue as service
from mailmax.core.services.actor import Actor

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
    return service.directories(app().settings())


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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
    records = service.list_queue(
        app().settings(), Actor.local(), domain=domain, deferred=deferred, held=held
    )
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
    try:
        record = service.show(app().settings(), Actor.local(), queue_id)
    except NotFound as exc:
        raise CLIError(f"{exc}; see `mailmax queue list`") from None
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
