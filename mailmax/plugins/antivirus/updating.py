"""When definition updates run (at start, daily at a time, every N hours) and what they report.

One :class:`~mailmax.plugins.antivirus.updates.DefinitionUpdater` serves the running server per
update command; the first start of the plugin in a process runs the update at start (after
start-up: the reactor runs it once it is up), reloads do not.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from mailmax.core.programs import split_program
from mailmax.plugin import AdminError, PluginContext, PluginHost, current_host
from mailmax.plugins.antivirus.clamdclient import ScannerError
from mailmax.plugins.antivirus.scanning import scanner_for
from mailmax.plugins.antivirus.updates import DefinitionUpdater, describe

_UPDATERS: dict[tuple[Any, ...], DefinitionUpdater] = {}
#: When each updater's schedule began (by ``id`` of the updater).
_SINCE: dict[int, float] = {}
#: Counter that says an at-start update was already asked for in this process.
_STARTED = "updates.at_start"


def updater_for(host: PluginHost, config: Any) -> DefinitionUpdater | None:
    """The updater of ``config``'s update command, or None when there is none."""
    if not config.update_command:
        return None
    key = (config.update_command, config.update_timeout, config.clamd_socket, config.scanner)
    found = _UPDATERS.get(key)
    if found is None:
        clamd = scanner_for(host.reactor, config) if config.scanner == "clamd" else None
        argv = split_program(config.update_command, "update")
        found = DefinitionUpdater(host.reactor, argv, config.update_timeout, clamd)
        _UPDATERS[key] = found
    return found


def configure(config: Any) -> None:
    """Check the update command; on the first start, schedule the at-start update."""
    if config.update_command:
        split_program(config.update_command, "update")
    elif config.update_at_start or config.update_daily_at or config.update_every_hours:
        raise ValueError("updates are scheduled but update_command is empty")
    try:
        host = current_host()
    except RuntimeError:
        return  # checked without a server
    if not config.update_at_start or host.reactor is None:
        return
    metrics = host.for_plugin("antivirus").metrics
    if metrics.value(_STARTED):
        return
    metrics.increment(_STARTED)
    host.reactor.callLater(0, _run, host, config)


def _run(host: PluginHost, config: Any) -> Any:
    updater = updater_for(host, config)
    if updater is None:
        return None
    log = host.for_plugin("antivirus").log
    d = updater.run()
    d.addCallback(lambda result: log.info("definition update: {r}", r=describe(result)))
    d.addErrback(lambda f: log.error("definition update failed: {e}", e=f.getErrorMessage()))
    return d


def _last_daily(now: float, at: str) -> float:
    """The latest time at or before ``now`` that was ``at`` (HH:MM) UTC."""
    hour, minute = (int(p) for p in at.split(":"))
    day = time.gmtime(now)
    today = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hour, minute, 0))
    return today if today <= now else today - 86400


def update_due(
    now: float, last: float | None, since: float, every_hours: float, daily_at: str
) -> bool:
    """Whether an update is due at ``now``: ``last`` is when the last one started (None: none
    yet), ``since`` when the schedule began (the server's start or the reload that set it)."""
    if every_hours and now - (last if last is not None else since) >= every_hours * 3600:
        return True
    if daily_at:
        planned = _last_daily(now, daily_at)
        return (last if last is not None else since) < planned
    return False


def when_due(host: PluginHost, config: Any) -> Any:
    """Run the update when the schedule says it is due (a task run every minute)."""
    updater = updater_for(host, config)
    if updater is None or not (config.update_daily_at or config.update_every_hours):
        return None
    now = host.clock.seconds()
    since = _SINCE.setdefault(id(updater), now)
    last = updater.last.started if updater.last is not None else None
    due = update_due(now, last, since, config.update_every_hours, config.update_daily_at)
    return _run(host, config) if due else None


async def status(context: PluginContext, config: Any) -> dict[str, Any]:
    """The scanner, whether it answers, its signature version and the last update."""
    host: Any = context.host
    out: dict[str, Any] = {"scanner": config.scanner}
    if config.scanner == "clamd":
        out["clamd_socket"] = config.clamd_socket
        try:
            out["clamd_version"] = await scanner_for(host.reactor, config).version()
            out["clamd"] = "answering"
        except ScannerError as exc:
            out["clamd"] = f"not answering: {exc}"
            out["clamd_version"] = None
    else:
        out["command"] = config.command
    updater = updater_for(host, config)
    out["update_command"] = config.update_command or None
    out["last_update"] = updater.last.as_dict() if updater and updater.last else None
    out["last_update_text"] = describe(updater.last if updater else None)
    return out


async def update_now(context: PluginContext, config: Any) -> dict[str, Any]:
    """Run the update command now (or wait for the one running) and report its result."""
    updater = updater_for(context.host, config)  # type: ignore[arg-type]
    if updater is None:
        raise AdminError(
            "no update command: set update_command in [plugins.settings.antivirus] "
            '(e.g. "freshclam") and run `mailmax reload`'
        )
    result = await updater.run()
    if not result.ok:
        raise AdminError(describe(result))
    return result.as_dict()
