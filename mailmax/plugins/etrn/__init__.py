"""etrn: mail for ETRN domains is held until the domain's own server asks for it.

A domain of type ``etrn`` (``mailmax domain edit D --type etrn``) receives mail here for a site
that is not always connected. Its mail is not sent: it waits in the hold directory (``[queue]
hold_dir``). When the site's server connects and says ``ETRN D`` (RFC 1985) from an address
in the domain's ``clients``, the held mail is sent to the domain's delivery host
(``--delivery-host``), or to its MX hosts when it has none. ETRN from any other address is
refused (459) and changes nothing. ETRN is offered in EHLO only where this plugin is enabled
(it can be switched off per listening address).

    mailmax plugin enable etrn
    mailmax plugin set etrn clients=192.0.2.10,198.51.100.0/24 --domain branch.example
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from mailmax.plugin import (
    Domain,
    DomainType,
    Engine,
    PluginSettings,
    Route,
    Session,
    Verdict,
    accept,
    check_networks,
    hookimpl,
    host_port,
    reject,
)

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "listener", "domain")


class Settings(PluginSettings):
    """Who may ask for a domain's mail, and how it is sent then."""

    clients: list[str] = Field(
        default_factory=list,
        description="Addresses or networks allowed to send ETRN for the domain.",
    )
    port: int = Field(
        0, ge=0, le=65535, description="SMTP port of the delivery host; 0 = 25 (MX: remote_port)."
    )
    tls: Literal["none", "may", "encrypt", "verify"] = Field(
        "may", description="STARTTLS when sending the held mail."
    )

    @field_validator("clients")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


def _is_etrn(record: Domain | None) -> bool:
    return record is not None and record.type is DomainType.ETRN


@hookimpl
def mailmax_route(domain_record: Domain | None, config: Settings) -> Route | None:
    """Hold the mail of ETRN domains; on release send it to the delivery host or the MX."""
    if domain_record is None or domain_record.type is not DomainType.ETRN:
        return None
    engine = Engine("ETRN MX", port=config.port, tls=config.tls)
    if domain_record.delivery_host:
        host, port = host_port(domain_record.delivery_host, config.port or 25)
        engine = Engine("ETRN host", host, port, config.tls)
    return Route((engine,), hold=True, transit=True, name="ETRN")


def _allowed(peer: str, clients: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(c, strict=False) for c in clients)


@hookimpl
def mailmax_etrn(
    session: Session, domain: str, domain_record: Domain | None, config: Settings
) -> Verdict | None:
    """Allow ETRN for an ETRN domain from one of its clients; refuse everything else."""
    if not _is_etrn(domain_record):
        return reject(f"{domain} is not an ETRN domain here", 550, "5.7.1")
    if not _allowed(session.peer_ip, config.clients):
        return reject(f"{session.peer_ip} may not start delivery for {domain}", 550, "5.7.1")
    return accept()
