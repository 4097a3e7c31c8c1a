"""Run the housekeeping plugin's daily job now, or as a dry run (the CLI, the API, the web admin).

Every domain's own housekeeping settings apply; a system administrator may run it over every
domain, a domain administrator over their domain only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mailmax.core.directory.errors import DirectoryError
from mailmax.core.hooks import PluginError, Scope
from mailmax.core.pluginhost.scopes import ScopeStore
from mailmax.core.services.actor import Actor, audit
from mailmax.core.services.domains import get_domain
from mailmax.core.services.plugins import PluginAdmin, PluginRefused

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory
    from mailmax.plugins.housekeeping.job import Report

PLUGIN = "housekeeping"


class HousekeepingFailed(DirectoryError):
    """Some users could not be housekept; the report says which."""


def run(
    settings: Settings,
    directory: SQLDirectory,
    actor: Actor,
    now: float,
    *,
    dry_run: bool = False,
    domain: str | None = None,
) -> Report:
    """Housekeep every domain (or ``domain``) at time ``now``; the report of what was done."""
    from mailmax.plugins.housekeeping import job

    if domain is None:
        actor.require_system("housekeeping every domain (name one domain)")
    else:
        domain = get_domain(directory, actor, domain).name
    admin = PluginAdmin(settings, directory, actor)
    plugin = admin.load(PLUGIN)
    store = ScopeStore(admin.source())

    def settings_for(scope: Scope) -> tuple[bool, Any]:
        try:
            return store.effective(plugin, scope)
        except PluginError as exc:
            raise PluginRefused(str(exc)) from None

    report = job.run(directory, settings_for, now, dry_run=dry_run, only_domain=domain)
    if not dry_run:
        audit(directory, actor, "housekeeping.run", domain or "*", removed=len(report.removed))
    return report


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_lines(report: Report) -> list[str]:
    """The report as the lines an administrator reads (the errors are :func:`error_lines`)."""
    if not report.domains:
        return [
            f"housekeeping is off for every domain: switch it on with `mailmax plugin enable "
            f"{PLUGIN}` and set remove_after_days or inactive_days with `mailmax plugin set "
            f"{PLUGIN} ...` (add --domain DOMAIN for one domain)"
        ]
    verb = "would remove" if report.dry_run else "removed"
    lines = [
        f"{removal.user} {removal.folder}: {verb} {removal.messages} message(s), "
        f"{removal.bytes} bytes"
        for removal in report.removed
    ]
    for idle in report.inactive:
        done = idle.action
        if idle.action == "disable":
            done = "would disable" if report.dry_run else "disabled"
        lines.append(f"{idle.user}: no login since {_when(idle.since)}: {done}")
    lines.append(
        f"{len(report.domains)} domain(s): {len(report.removed)} folder(s) "
        f"{'to clean' if report.dry_run else 'cleaned'}, {len(report.inactive)} idle user(s)"
    )
    return lines


def error_lines(report: Report) -> list[str]:
    """One line per user that could not be housekept."""
    return [f"error: {error}" for error in report.errors]


def failure(report: Report) -> str | None:
    """What to say when some users could not be housekept (None: all were)."""
    if not report.errors:
        return None
    return f"{len(report.errors)} user(s) could not be housekept (see above)"
