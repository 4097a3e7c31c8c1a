"""The SMTP factories: one per ``smtp``/``submission``/``smtps`` listener.

:class:`SMTPFactory` builds an :class:`~mailmax.core.smtp.server.SMTPServer` for each
connection; :class:`PluginSMTPFactory`, the one the service runs, gives each session a
directory whose recipient look-ups the session's plugins resolve (aliases, catch-all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.net.factory import ListenerFactory
from mailmax.core.pluginhost.recipients import PluginRecipients
from mailmax.core.smtp.server import SMTPServer

if TYPE_CHECKING:
    from mailmax.core.spool.spool import Spool


class SMTPFactory(ListenerFactory):
    """Builds :class:`SMTPServer` sessions for one listener and can stop them gracefully."""

    protocol = SMTPServer  # type: ignore[assignment]

    def __init__(self, *, spool: Spool, commit_seconds: Any = None, **common: Any) -> None:
        """``spool`` takes the accepted messages; ``commit_seconds`` (a histogram, optional)
        observes how long each commit to the spool takes; ``common`` is
        :class:`~mailmax.core.net.factory.ListenerFactory`'s."""
        super().__init__(**common)
        self.spool = spool
        self.commit_seconds = commit_seconds


class PluginSMTPFactory(SMTPFactory):
    """The SMTP factory whose sessions resolve recipients with their own plugin set."""

    def buildProtocol(self, addr: Any) -> SMTPServer:
        """A new session whose recipient look-ups go through :class:`PluginRecipients`."""
        proto = super().buildProtocol(addr)
        proto.directory = PluginRecipients(self.directory, lambda: proto.plugins)
        return proto
