"""The base of the SMTP, POP3 and IMAP server factories: one factory per listener.

:class:`ListenerFactory` holds what every session of a listener shares (settings, the listener,
the directory, the plugin set of the moment, TLS options, the reactor, log-in throttling), keeps
its sessions for graceful shutdown (:class:`~mailmax.core.sessions.SessionSet`) and admits new
connections under the per-IP limits (:class:`~mailmax.core.net.limits.ConnectionLimiter`),
after asking the client's rights (:mod:`mailmax.core.clientrights`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.logger import Logger

from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.clientrights import ClientRights, rights_from_settings
from mailmax.core.credentials import MailPortal, plugin_checkers
from mailmax.core.hooks import PluginError, Scope
from mailmax.core.net.limits import ConnectionLimiter
from mailmax.core.observe.activity import Activity
from mailmax.core.observe.events import EventBus
from mailmax.core.sessions import SessionSet

if TYPE_CHECKING:
    from twisted.cred.portal import Portal
    from twisted.internet import ssl

    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet
    from mailmax.core.model import Session

log = Logger(namespace="mailmax.net")


class ListenerFactory(SessionSet, protocol.ServerFactory):
    """Builds one session per connection with ``protocol(factory)``.

    ``authlimit`` (failed log-in throttling), ``logins`` (POP/IMAP-before-SMTP), ``limiter``
    (per-IP connection limits), ``portal`` (the ``twisted.cred`` portal every log-in goes
    through), ``events`` (the event bus) and ``activity`` (activity counters) are shared by the
    service's listeners; each defaults to one of this factory's own.
    """

    noisy = False  # sessions log their own connection line

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
        limiter: ConnectionLimiter | None = None,
        portal: Portal | None = None,
        events: EventBus | None = None,
        activity: Activity | None = None,
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
        self.authlimit = authlimit if authlimit is not None else AuthLimiter.from_settings(settings)
        self.logins = logins if logins is not None else RecentLogins()
        self.portal = portal or MailPortal(directory, plugin_checkers(plugins))
        self.limiter = (
            limiter
            if limiter is not None
            else ConnectionLimiter.from_settings(settings.connections, reactor)
        )
        #: Where sessions publish their events (logs, live traces).
        self.events = events if events is not None else EventBus()
        #: The activity counters sessions count into.
        self.activity = activity if activity is not None else Activity(enabled=False)
        self.init_sessions()

    @property
    def send_timeout(self) -> float:
        """Seconds a client may leave replies unread (of the settings current now)."""
        return float(self.settings.connections.send_timeout)

    def buildProtocol(self, addr: Any) -> Any:
        """A new session."""
        return self.protocol(self)

    def client_rights(self, session: Session) -> ClientRights:
        """The rights of the client of ``session``: the answer of the first enabled plugin
        implementing ``mailmax_client_rights`` for this listener, else the configuration's."""
        try:
            rights = self.plugins().first_result(
                "mailmax_client_rights",
                Scope(listener=self.listener.address),
                session=session,
                listener=self.listener.address,
            )
        except PluginError as exc:
            log.error("client rights of {ip}: {error}", ip=session.peer_ip, error=str(exc))
            rights = None
        if isinstance(rights, ClientRights):
            return rights
        if rights is not None:
            log.error("mailmax_client_rights answered {value!r}, not ClientRights", value=rights)
        return rights_from_settings(self.settings, session.peer_ip)

    def admit(self, ip: str, exempt: bool = False) -> str | None:
        """None when a connection from ``ip`` may start, else why not (it is then not counted).
        An ``exempt`` client is never limited."""
        return self.limiter.admit(self.listener.service, ip, exempt)

    def release(self, ip: str) -> None:
        """An admitted connection from ``ip`` has closed."""
        self.limiter.release(self.listener.service, ip)
