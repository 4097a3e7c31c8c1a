"""The audit log's retention: entries older than ``[admin] audit_retention_days`` are dropped
when the server starts, after a reload and once a day, on the reactor's clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger(namespace="mailmax.audit")

DAY_SECONDS = 86400.0


class AuditPruner:
    """Drops old audit entries now and then.

    ``clock`` is the reactor (or a :class:`twisted.internet.task.Clock`), ``settings`` gives
    the configuration in force, and ``prune(before)`` drops the entries recorded before that
    Unix time, giving (through a Deferred) how many went.
    """

    def __init__(
        self,
        clock: Any,
        settings: Callable[[], Any],
        prune: Callable[[float], defer.Deferred[int]],
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.prune = prune
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        """Prune now, then once a day."""
        self._loop = task.LoopingCall(self.run_once)
        self._loop.clock = self.clock
        self._loop.start(DAY_SECONDS, now=True)

    def stop(self) -> None:
        """Prune no more."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def run_once(self) -> defer.Deferred[int]:
        """Drop the entries older than the retention in force (none when it is 0); a failure
        is logged and tried again at the next run."""
        days = self.settings().admin.audit_retention_days
        if not days:
            return defer.succeed(0)
        before = self.clock.seconds() - days * DAY_SECONDS
        d = defer.maybeDeferred(self.prune, before)

        def done(count: int) -> int:
            if count:
                log.info("dropped {count} audit entries older than {days} days", count=count,
                         days=days)  # fmt: skip
            return count

        def failed(failure: Any) -> int:
            log.failure("cannot drop old audit entries; trying again tomorrow", failure)
            return 0

        return d.addCallbacks(done, failed)
