"""What a client may do, decided from its IP address when it connects.

:class:`ClientRights` is the answer of the ``mailmax_client_rights`` hook (the connection
control plugin answers it from its access rules). When no enabled plugin answers, the rights
come from the configuration: ``[smtp] trusted_networks`` make a client trusted and
``[connections] exempt_networks`` exempt it from the per-IP connection limits
(:func:`rights_from_settings`). The connection base asks once per connection, before the
connection limits count it, and copies the rights onto the :class:`~mailmax.core.model.Session`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mailmax.core.net.limits import NetworkList

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.model import Session


@dataclass(frozen=True, slots=True)
class ClientRights:
    """The rights of one client on one listener.

    ``banned`` refuses the client (``reason`` is shown to it); ``trusted`` has no
    restrictions; ``relay_allowed`` may send to other domains without AUTH; ``auth_exempt``
    is treated as authenticated for sending (no AUTH needed where a listener requires it, may
    relay); ``local_only`` may send to local mailboxes only, authenticated or not;
    ``dnsbl_exempt`` is never looked up in DNS block lists; ``limits_exempt`` is not counted
    by the per-IP connection limits. ``rule`` names what decided (for the log).
    """

    banned: bool = False
    reason: str = ""
    trusted: bool = False
    relay_allowed: bool = False
    auth_exempt: bool = False
    local_only: bool = False
    dnsbl_exempt: bool = False
    limits_exempt: bool = False
    rule: str = ""

    @property
    def refusal(self) -> str:
        """What a banned client is told."""
        return self.reason or "Connections from your address are refused here"

    def apply(self, session: Session) -> None:
        """Set the session's trust flags to these rights."""
        session.trusted = self.trusted
        session.relay_allowed = self.relay_allowed or self.trusted
        session.auth_exempt = self.auth_exempt or self.trusted
        session.local_only = self.local_only
        session.dnsbl_exempt = self.dnsbl_exempt or self.trusted


#: A client no rule names: normal access.
PERMITTED = ClientRights()
#: A trusted client: no restrictions.
TRUSTED = ClientRights(
    trusted=True,
    relay_allowed=True,
    auth_exempt=True,
    dnsbl_exempt=True,
    limits_exempt=True,
)


class _Cached:
    """The configuration's networks as :class:`NetworkList` objects, built once per list."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, ...], NetworkList] = {}

    def get(self, networks: list[str]) -> NetworkList:
        key = tuple(networks)
        found = self._lists.get(key)
        if found is None:
            if len(self._lists) > 16:  # reloads with other lists: keep only the recent ones
                self._lists.clear()
            found = self._lists[key] = NetworkList(key)
        return found


_NETWORKS = _Cached()


def config_rules(settings: Settings) -> list[tuple[str, str, ClientRights]]:
    """The rules the configuration implies, in the order they apply: ``(setting, network,
    rights)`` for each network of ``[smtp] trusted_networks`` (trusted), then of
    ``[connections] exempt_networks`` (exempt from connection limits)."""
    out = [("smtp.trusted_networks", n, TRUSTED) for n in settings.smtp.trusted_networks]
    exempt = ClientRights(limits_exempt=True)
    exempt_networks = settings.connections.exempt_networks
    out += [("connections.exempt_networks", n, exempt) for n in exempt_networks]
    return out


def rights_from_settings(settings: Settings, ip: str) -> ClientRights:
    """The rights the configuration gives ``ip`` (the first of :func:`config_rules` that
    holds it), or :data:`PERMITTED`."""
    if ip in _NETWORKS.get(settings.smtp.trusted_networks):
        return _CONFIG_TRUSTED
    if ip in _NETWORKS.get(settings.connections.exempt_networks):
        return _CONFIG_EXEMPT
    return PERMITTED


_CONFIG_TRUSTED = replace(TRUSTED, rule="smtp.trusted_networks")
_CONFIG_EXEMPT = ClientRights(limits_exempt=True, rule="connections.exempt_networks")
