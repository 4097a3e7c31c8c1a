"""Virus definition updates: run the administrator's update command, then have clamd reload.

There is no update command by default: on Debian, the ``clamav-freshclam`` service may already
keep the database fresh. When the administrator names one (``freshclam``, or a script that
copies signatures from a mirror), :class:`DefinitionUpdater` runs it without a shell and with a
time limit, asks clamd to reload its database, and keeps the outcome and clamd's version line
(which names the signature version) for status reports. An update never runs
twice at once: a request while one runs waits for that one. Mail keeps flowing meanwhile:
clamd reloads in the background and answers scans from the old database until the new one is
in place.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from twisted.internet import defer, threads

from mailmax.core.programs import ProgramError, run_program
from mailmax.plugins.antivirus.clamdclient import ClamdClient, ScannerError


@dataclass(frozen=True)
class UpdateResult:
    """One update: when it ran, whether it worked, and what the command and clamd said."""

    started: float
    finished: float
    ok: bool
    status: int | None
    output: str
    version: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For JSON output."""
        return asdict(self)


class DefinitionUpdater:
    """Runs ``argv`` (already checked) and reloads ``clamd``; see the module's description."""

    def __init__(
        self, reactor: Any, argv: list[str], timeout: float, clamd: ClamdClient | None
    ) -> None:
        self.reactor = reactor
        self.argv = argv
        self.timeout = timeout
        self.clamd = clamd
        self.last: UpdateResult | None = None
        self._waiters: list[defer.Deferred[UpdateResult]] = []

    def run(self) -> defer.Deferred[UpdateResult]:
        """Update now, or wait for the update already running; fires with its result."""
        waiter: defer.Deferred[UpdateResult] = defer.Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            defer.ensureDeferred(self._update()).addBoth(self._finished)
        return waiter

    def _finished(self, result: Any) -> None:
        if isinstance(result, UpdateResult):
            self.last = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, UpdateResult):
                waiter.callback(result)
            else:
                waiter.errback(result)

    async def _update(self) -> UpdateResult:
        started = self.reactor.seconds()
        status: int | None = None
        output = ""
        try:
            folder = await threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), tempfile.mkdtemp, None, "mailmax-upd-"
            )
            try:
                result = await run_program(self.reactor, self.argv, folder, self.timeout)
            finally:
                await threads.deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), shutil.rmtree, folder, True
                )
            status, output = result.status, result.output
            if status != 0:
                raise ProgramError(f"the update command exited with status {status}")
            version = None
            if self.clamd is not None:
                await self.clamd.reload()
                version = await self.clamd.version()
        except (ProgramError, ScannerError) as exc:
            return UpdateResult(
                started, self.reactor.seconds(), False, status, output, None, str(exc)
            )
        return UpdateResult(started, self.reactor.seconds(), True, status, output, version)


def describe(result: UpdateResult | None) -> str:
    """One line for people: when the last update ran and how it ended."""
    if result is None:
        return "no update has run since the server started"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.finished))
    if result.ok:
        return f"updated at {when}" + (f"; clamd: {result.version}" if result.version else "")
    return f"update failed at {when}: {result.error}"
