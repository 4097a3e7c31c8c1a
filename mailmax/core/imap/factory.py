"""The IMAP server factory: one per ``imap``/``imaps`` listener.

:class:`IMAPFactory` builds a :class:`~mailmax.core.imap.server.IMAPServer` for each
connection, runs the sessions' blocking mailbox-store calls in its own thread pool, counts
logged-in sessions per user across listeners and shuts its sessions down with a grace period.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from mailmax.core.imap.auth import IMAPLimits
from mailmax.core.imap.server import IMAPServer
from mailmax.core.net.factory import ListenerFactory


class IMAPFactory(ListenerFactory):
    """Builds :class:`IMAPServer` sessions for one listener; runs store calls in threads."""

    protocol = IMAPServer  # type: ignore[assignment]
    #: Sessions per user across all listeners (imap and imaps count together).
    all_user_sessions: ClassVar[collections.Counter[str]] = collections.Counter()

    def __init__(self, **common: Any) -> None:
        """``common`` is :class:`~mailmax.core.net.factory.ListenerFactory`'s."""
        super().__init__(**common)
        self.limits = IMAPLimits.from_settings(self.settings)
        #: Logged-in sessions per user, shared by every IMAP listener of the process.
        self.user_sessions = IMAPFactory.all_user_sessions
        self._pool: ThreadPool | None = None
        self._pool_trigger: Any = None

    def blocking(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run ``function(*args)`` in this factory's thread pool."""
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=8, name="imap-store")
            self._pool.start()
            add_trigger = getattr(self.reactor, "addSystemEventTrigger", None)
            if add_trigger is not None:
                self._pool_trigger = add_trigger("during", "shutdown", self._stop_pool)
        return threads.deferToThreadPool(self.reactor, self._pool, function, *args)

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        self._pool_trigger = None
        if pool is not None:
            pool.stop()

    def all_sessions_gone(self) -> None:
        """Shutting down and no session left: stop the store's threads."""
        if self._pool_trigger is not None:
            remove = getattr(self.reactor, "removeSystemEventTrigger", None)
            if remove is not None:
                with contextlib.suppress(ValueError, KeyError):
                    remove(self._pool_trigger)
        self._stop_pool()
