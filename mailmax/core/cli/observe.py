"""``mailmax trace``, ``mailmax stats`` and ``mailmax user logins``: what the running server
is doing, how busy it has been, and who logged in from where."""

from __future__ import annotations

import json
import sys
import time

import click

from mailmax.core.admin import AdminError, connect, request
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column
from mailmax.core.cli.users import find_user
from mailmax.core.observe.activity import KINDS, WINDOWS
from mailmax.core.observe.events import CATEGORIES, SERVICES
from mailmax.core.observe.trace import DEFAULT_CATEGORIES


@click.command("trace")
@click.option(
    "--service",
    "services",
    multiple=True,
    type=click.Choice(SERVICES),
    help="Only this service's events (repeat for several).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORIES),
    help="Only these categories (repeat); default: " + ", ".join(DEFAULT_CATEGORIES) + ".",
)
@click.option("--ip", default="", metavar="IP", help="Only sessions of this client address.")
@click.option("--user", default="", metavar="ADDRESS", help="Only events of this user.")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N events (default: run until interrupted).",
)
@common_options
def trace_command(
    services: tuple[str, ...],
    categories: tuple[str, ...],
    ip: str,
    user: str,
    count: int | None,
) -> None:
    """Show the running server's events live, as they happen, until interrupted (Ctrl-C).

    Nothing is restarted and nothing changes for the clients. Passwords and authentication
    exchanges are shown as ***. The data category shows message contents.
    """  # fmt: skip
    state = app()
    wanted = {"services": list(services), "categories": list(categories), "ip": ip, "user": user}
    try:
        client = connect(state.settings().data_dir, timeout=None)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    shown = 0
    try:
        client.sendall(b"trace " + json.dumps(wanted).encode() + b"\n")
        stream = client.makefile("rb")
        first = stream.readline().decode("utf-8", "replace").strip()
        if not first.startswith("OK"):
            raise CLIError(first.removeprefix("ERR ").strip() or "the server closed the trace")
        click.echo("tracing; Ctrl-C to stop", err=True)
        for raw in stream:
            event = json.loads(raw)
            click.echo(json.dumps(event) if state.out.as_json else _line(event))
            sys.stdout.flush()
            shown += 1
            if count is not None and shown >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        client.close()  # fmt: skip


def _line(event: dict) -> str:
    if "notice" in event:
        return f"-- {event['notice']}"
    stamp = time.strftime("%H:%M:%S", time.localtime(event["time"]))
    who = " ".join(part for part in (event.get("session"), event.get("ip")) if part)
    text = event["text"].replace("\n", "\n    ")
    return f"{stamp} {event['service']} {event['category']} [{who}] {text}"


@click.command("stats")
@click.option(
    "--timeout", default=30.0, show_default=True, metavar="SECONDS", help="How long to wait."
)
@common_options
def stats_command(timeout: float) -> None:
    """Show the running server's activity per service: connections, failed logins, messages
    and bytes received over the last hour, 12 hours, 24 hours and week.

    The counts are kept across restarts (saved in activity.json in the data directory).
    """  # fmt: skip
    state = app()
    try:
        answer = request(state.settings().data_dir, "stats", timeout=timeout)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    summary = json.loads(answer)
    if state.out.as_json:
        state.out.json(summary)
        return
    rows = [
        {"service": service, "kind": kind.replace("_", " "), **counts[kind]}
        for service, counts in summary.items()
        for kind in KINDS
    ]
    columns = [Column("service", "SERVICE"), Column("kind", "WHAT")]
    columns += [Column(window, window.upper()) for window in WINDOWS]
    state.out.table(rows, columns, empty="no activity in the last week")


@click.command("logins")
@click.argument("address")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many of the newest logins to show.",
)
@common_options
def logins_command(address: str, limit: int) -> None:
    """Show the recorded logins of the user ADDRESS (service, client address, time), newest
    first. The directory keeps the newest 20 per user."""  # fmt: skip
    state = app()
    user = find_user(address)
    found = state.directory().logins(user.address, limit=limit) or []
    rows = [
        {
            "service": service,
            "ip": ip,
            "time": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(at)),
            "timestamp": at,
        }
        for service, ip, at in found
    ]
    columns = [Column("time", "TIME"), Column("service", "SERVICE"), Column("ip", "IP")]
    state.out.table(rows, columns, empty=f"no logins recorded for {user.address}")
