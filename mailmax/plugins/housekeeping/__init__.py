"""housekeeping: old messages leave chosen folders, and idle users are reported or disabled.

Per domain, with the system settings as the default (``mailmax plugin set housekeeping
remove_after_days=30 --domain example.com``): messages older than ``remove_after_days`` days
are removed from ``folders`` (by default Trash and Junk) of every user, through the store, so
open IMAP sessions (an IDLE client) see the expunges; users not logged in for
``inactive_days`` are reported in the log, or disabled. It runs every day at ``run_at``
(03:30 by default, in the server's time zone) in the server, and on demand with ``mailmax
housekeeping run [--dry-run]``; each run logs what it did.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator
from twisted.internet import defer, threads
from twisted.logger import Logger

from mailmax.core.store.names import folder_parts
from mailmax.plugin import SYSTEM_ONLY, Field, PluginHost, PluginSettings, Scope, daily
from mailmax.plugins.housekeeping import job

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain")
#: Most folders one domain may name.
MAX_FOLDERS = 20
#: A time of day, HH:MM on a 24-hour clock.
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

log = Logger(namespace="mailmax.plugins.housekeeping")


class Settings(PluginSettings):
    """What housekeeping removes and whom it reports."""

    remove_after_days: int = Field(
        0, ge=0, le=36500, description="Remove messages older than this many days; 0: keep all."
    )
    folders: list[str] = Field(
        default_factory=lambda: ["Trash", "Junk"],
        description="Folders old messages are removed from.",
    )
    inactive_days: int = Field(
        0, ge=0, le=36500, description="Users not logged in for this many days; 0: none."
    )
    inactive_action: Literal["report", "disable"] = Field(
        "report", description="What to do with such users: report (in the log) or disable."
    )
    run_at: str = Field(
        "03:30",
        description="Time of day of the daily run, HH:MM in the server's time zone.",
        json_schema_extra=SYSTEM_ONLY,
    )

    @field_validator("run_at")
    @classmethod
    def _run_at(cls, value: str) -> str:
        if not _TIME_OF_DAY.match(value):
            raise ValueError(
                f"{value!r} is not a time of day: write HH:MM on a 24-hour clock "
                "(00:00 to 23:59), in the server's time zone"
            )
        return value

    @field_validator("folders")
    @classmethod
    def _folders(cls, values: list[str]) -> list[str]:
        if len(values) > MAX_FOLDERS:
            raise ValueError(f"at most {MAX_FOLDERS} folders")
        for value in values:
            try:
                folder_parts(value)
            except Exception as exc:
                raise ValueError(f"{value!r} is not a folder name: {exc}") from None
        return values


def log_report(report: job.Report) -> None:
    """Write what a run did to the server log."""
    verb = "would remove" if report.dry_run else "removed"
    for removal in report.removed:
        log.info(
            "housekeeping: {verb} {count} message(s) ({bytes} bytes) older than the limit "
            "from {user} {folder}",
            verb=verb,
            count=removal.messages,
            bytes=removal.bytes,
            user=removal.user,
            folder=removal.folder,
        )
    for idle in report.inactive:
        log.info(
            "housekeeping: {user} has not logged in since {since:.0f}: {action}",
            user=idle.user,
            since=idle.since,
            action="disabled" if idle.action == "disable" and not report.dry_run else "reported",
        )
    for error in report.errors:
        log.error("housekeeping: {error}", error=error)
    log.info(
        "housekeeping done: {domains} domain(s), {removed} folder(s) cleaned, {idle} idle user(s)",
        domains=len(report.domains),
        removed=len(report.removed),
        idle=len(report.inactive),
    )


def _in_thread(host: PluginHost, function: Any, *args: Any) -> defer.Deferred[Any]:
    if host.reactor is None:  # a host without a reactor (a test harness) runs it here
        return defer.maybeDeferred(function, *args)
    pool = host.reactor.getThreadPool()
    return threads.deferToThreadPool(host.reactor, pool, function, *args)


@daily("run_at", tz="", name="housekeeping")
async def housekeeping(host: PluginHost, settings_for: Any) -> job.Report:
    """The daily run: each domain's settings are read here, the work is done in a thread."""
    directory = host.sync_directory
    if directory is None:
        raise RuntimeError("housekeeping needs the server's directory")
    now = host.clock.seconds()
    domains = await _in_thread(host, directory.list_domains)
    configs = {d.name: settings_for(Scope(domain=d.name)) for d in domains}
    report = await _in_thread(host, job.run, directory, lambda scope: configs[scope.domain], now)
    log_report(report)
    return report
