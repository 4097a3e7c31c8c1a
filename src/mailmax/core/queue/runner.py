"""The queue runner service: delivers spooled messages, retries, bounces (S4, Q1, Q4, Q5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer

from mailmax.core.config import Settings
from mailmax.core.hooks import PluginSet
from mailmax.core.spool import Spool


class QueueRunner(Service):
    """Delivers every message of the spool to its local recipients."""

    def __init__(
        self,
        *,
        spool: Spool,
        directory: Any,
        plugins: Callable[[], PluginSet],
        settings: Settings,
        reactor: Any = None,
    ) -> None:
        self.spool = spool
        self.directory = directory
        self.plugins = plugins
        self.settings = settings
        self._reactor = reactor

    def startService(self) -> None:
        """Resume the messages on disk, follow new commits, scan periodically."""
        raise NotImplementedError

    def stopService(self) -> defer.Deferred[None]:
        """Let deliveries in flight finish, then stop the threads."""
        raise NotImplementedError

    def wake(self) -> None:
        """Deliver every due message now."""
        raise NotImplementedError
