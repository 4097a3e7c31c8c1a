"""The IMAP server factory: one per ``imap``/``imaps`` listener (S3).

:class:`IMAPFactory` builds a :class:`~mailmax.core.imap.server.IMAPServer` for each
connection, runs the sessions' blocking mailbox-store calls in its own thread pool, counts
logged-in sessions per user across listeners and shuts its sessions down with a grace period.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet import defer, protocol, threads
from twisted.python.threadpool import ThreadPool

from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.imap.auth import IMAPLimits
from mailmax.core.imap.server import IMAPServer

if TYPE_CHECKING:
    from twisted.internet import ssl

    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet


class IMAPFactory(protocol.ServerFactory):
    """Builds :class:`IMAPServer` sessions for one listener; runs store calls in threads."""

    #: Sessions per user across all listeners (imap and imaps count together).
    all_user_sessions: ClassVar[collections.Counter[str]] = collections.Counter()

    def __init__(
        self,
        *,
        settings: Settings,
        listener: ListenerSettings,
        directory: AsyncDirectory,
        plugins: Callable[[], PluginSet],
        tls_options: ssl.CertificateOptions | None,
        reactor: Any = None,
        authlimit: AuthLimiter | None = None,
        logins: RecentLogins | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.listener = listener
        self.directory = directory
        self.plugins = plugins
        self.tls_options = tls_options
        self.reactor = reactor
        self.limits = IMAPLimits.from_settings(settings)
        #: Failed-login throttling, shared with the other listeners when the service gives one.
        self.authlimit = authlimit if authlimit is not None else AuthLimiter.from_settings(settings)
        #: Successful log-ins by IP, for POP/IMAP-before-SMTP (P5).
        self.logins = logins if logins is not None else RecentLogins()
        self.sessions: set[IMAPServer] = set()
        #: Logged-in sessions per user, shared by every IMAP listener of the process.
        self.user_sessions = IMAPFactory.all_user_sessions
        self.shutting_down = False
        self._waiting: list[defer.Deferred[None]] = []
        self._grace_call: Any = None
        self._pool: ThreadPool | None = None
        self._pool_trigger: Any = None

    def buildProtocol(self, addr: Any) -> IMAPServer:
        """A new session."""
        return IMAPServer(self)

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

    def shutdown(self, grace_seconds: float) -> defer.Deferred[None]:
        """``* BYE`` to every session (after its running command, within the grace period)."""
        self.shutting_down = True
        done: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(done)
        for session in list(self.sessions):
            session.shutdown()
        if self.sessions and self._grace_call is None:
            self._grace_call = self.reactor.callLater(grace_seconds, self._grace_over)
        self._maybe_done()
        return done

    def _grace_over(self) -> None:
        for session in list(self.sessions):
            session.force_close()

    def session_gone(self, session: IMAPServer) -> None:
        """Called by a session when its connection is lost."""
        self.sessions.discard(session)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if not self.shutting_down or self.sessions:
            return
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        if self._pool_trigger is not None:
            remove = getattr(self.reactor, "removeSystemEventTrigger", None)
            if remove is not None:
                with contextlib.suppress(ValueError, KeyError):
                    remove(self._pool_trigger)
        self._stop_pool()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
