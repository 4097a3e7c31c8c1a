"""The SMTP factories: one per ``smtp``/``submission``/``smtps`` listener.

:class:`SMTPFactory` builds an :class:`~mailmax.core.smtp.server.SMTPServer` for each
connection; :class:`PluginSMTPFactory`, the one the service runs, gives each session a
directory whose recipient look-ups the session's plugins resolve (aliases, catch-all).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol

from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.pluginhost.recipients import PluginRecipients
from mailmax.core.sessions import SessionSet
from mailmax.core.smtp.server import SMTPServer

if TYPE_CHECKING:
    from twisted.internet import ssl

    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet
    from mailmax.core.spool.spool import Spool


class SMTPFactory(SessionSet, protocol.ServerFactory):
    """Builds :class:`SMTPServer` sessions for one listener and can stop them gracefully."""

    noisy = False  # sessions log their own connection line

    def __init__(
        self,
        *,
        settings: Settings,
        listener: ListenerSettings,
        directory: AsyncDirectory,
        spool: Spool,
        plugins: Callable[[], PluginSet],
        tls_options: ssl.CertificateOptions | None,
        reactor: Any = None,
        authlimit: AuthLimiter | None = None,
        logins: RecentLogins | None = None,
    ) -> None:
        """``authlimit`` (failed-login throttling) and ``logins`` (POP/IMAP-before-SMTP) are
        shared with the other services; each defaults to one of this factory's own."""
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.listener = listener
        self.directory = directory
        self.spool = spool
        self.plugins = plugins
        self.tls_options = tls_options
        self.reactor = reactor
        self.authlimit = authlimit if authlimit is not None else AuthLimiter.from_settings(settings)
        self.logins = logins if logins is not None else RecentLogins()
        self.init_sessions()
        self._trusted = [
            ipaddress.ip_network(n, strict=False) for n in settings.smtp.trusted_networks
        ]

    def buildProtocol(self, addr: Any) -> SMTPServer:
        """A new session."""
        return SMTPServer(self)

    def is_trusted(self, ip: str) -> bool:
        """True when ``ip`` is in ``[smtp] trusted_networks``."""
        if not self._trusted or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)


class PluginSMTPFactory(SMTPFactory):
    """The SMTP factory whose sessions resolve recipients with their own plugin set."""

    def buildProtocol(self, addr: Any) -> SMTPServer:
        """A new session whose recipient look-ups go through :class:`PluginRecipients`."""
        proto = super().buildProtocol(addr)
        proto.directory = PluginRecipients(self.directory, lambda: proto.plugins)
        return proto
