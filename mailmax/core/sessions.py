"""The sessions of a server factory and their graceful shutdown (SIGTERM), for every protocol.

A factory keeps its open sessions in :attr:`SessionSet.sessions`; each session tells it
:meth:`~SessionSet.session_gone` when its connection is lost. :meth:`~SessionSet.shutdown`
asks every session to finish (``session.shutdown()``: idle ones close now, a command or
transaction in flight first ends) and closes what is left when the grace period is over
(``session.force_close()``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer


class SessionSet:
    """Mixin for a server factory: its sessions and their shutdown within a grace period.

    The factory sets ``self.reactor`` and calls :meth:`init_sessions` in its ``__init__``.
    """

    reactor: Any

    def init_sessions(self) -> None:
        """No session yet, not shutting down."""
        self.sessions: set[Any] = set()
        self.shutting_down = False
        self._waiting: list[defer.Deferred[None]] = []
        self._grace_call: Any = None

    def shutdown(self, grace_seconds: float) -> defer.Deferred[None]:
        """Ask every session to finish; close those still open after ``grace_seconds``. Fires
        once no session is left."""
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

    def session_gone(self, session: Any) -> None:
        """Called by a session when its connection is lost."""
        self.sessions.discard(session)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if not self.shutting_down or self.sessions:
            return
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        self.all_sessions_gone()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def all_sessions_gone(self) -> None:
        """Shutting down and the last session has gone: release what the sessions shared."""
