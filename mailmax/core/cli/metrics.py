"""``mailmax metrics``: the running server's counters and gauges (plugins' and the host's)."""

from __future__ import annotations

import json

import click

from mailmax.core.admin import AdminError, request
from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.cli.output import Column


@click.command("metrics")
@click.argument("prefix", required=False, default="")
@click.option(
    "--timeout", default=30.0, show_default=True, metavar="SECONDS", help="How long to wait."
)
@click.option(
    "--prometheus",
    is_flag=True,
    help="Print every metric in the Prometheus text format (what a scraper reads).",
)
@common_options
def metrics_command(prefix: str, timeout: float, prometheus: bool) -> None:
    """Show the running server's counters and gauges, those starting with PREFIX if given.

    Plugins count what they do (``<plugin>.<name>``); every scheduled task counts its runs,
    failures and skipped runs (``<plugin>.task.<task>.runs``). The values live in the server
    process: they start from zero when it starts, and reloads keep them. With --prometheus,
    everything a Prometheus scrape sees: activity, sessions, queue, deliveries, plugin
    verdicts, spool commit latency and the counters above.
    """
    state = app()
    if prometheus:
        if prefix:
            raise CLIError("--prometheus prints every metric; leave out PREFIX")
        try:
            text = json.loads(request(state.settings().data_dir, "metrics-prometheus", timeout))
        except AdminError as exc:
            raise CLIError(str(exc)) from None
        click.echo(text, nl=False)
        return
    try:
        answer = request(state.settings().data_dir, "metrics", timeout=timeout)
    except AdminError as exc:
        raise CLIError(str(exc)) from None
    snapshot = json.loads(answer)
    rows = [
        {"name": name, "kind": kind.rstrip("s"), "value": value}
        for kind in ("counters", "gauges")
        for name, value in snapshot.get(kind, {}).items()
        if name.startswith(prefix)
    ]
    rows.sort(key=lambda row: row["name"])
    for row in rows:
        value = row["value"]
        row["value"] = int(value) if float(value).is_integer() else value
    columns = [Column("name", "NAME"), Column("kind", "KIND"), Column("value", "VALUE")]
    state.out.table(rows, columns, empty="no metrics" + (f" under {prefix!r}" if prefix else ""))
