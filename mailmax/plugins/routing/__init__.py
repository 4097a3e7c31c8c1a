"""routing: smart hosts, relay-to-host and backup-MX domains, ordered delivery engines.

Where the mail for a remote domain goes, decided per message in the queue runner:

- **Relay-to-host domains** (``mailmax domain edit D --type relay --delivery-host HOST``): all
  their mail goes to the delivery host (``host`` or ``host:port``), without an MX look-up.
- **Backup-MX domains** (``--type backup --backup-priority N``): their mail goes only to MX hosts
  of the domain preferred over this server (preference below N, and below this server's own
  entry in the MX list); temporary failures are retried every ``[queue] retry_minutes`` without
  a warning or a bounce for ``backup_max_days``.
- **Smart hosting** (system-wide, or per sending domain: ``mailmax plugin set routing
  smart_host_enabled=true smart_host=mail.isp.example --domain D``, or ``false`` to switch it off
  for one domain): all other outbound mail goes to the smart host.
- Otherwise the **delivery engines** are tried in the order of ``engines``: ``direct`` (the
  internal engine, straight to the MX hosts) and the ``smart_hosts`` by name; ``direct`` may be
  left out. The first ``rules`` entry whose conditions all hold (destination domain, sender,
  size) puts its engine first.
- **TLS per destination**: ``tls_policies`` maps destination domains to a STARTTLS policy for
  direct delivery (``verify`` for a bank, ``encrypt`` for ``*.gov``...).

Mail for ETRN domains is left to the ``etrn`` plugin.
"""

from __future__ import annotations

from mailmax.plugin import Domain, DomainType, Envelope, Route, hookimpl
from mailmax.plugins.routing.engines import Rule, Settings, SmartHost, backup_route, relay_route
from mailmax.plugins.routing.engines import choose_route as _choose

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain")

__all__ = ["SCOPES", "Rule", "Settings", "SmartHost", "mailmax_route"]


@hookimpl
def mailmax_route(
    domain: str, envelope: Envelope, domain_record: Domain | None, config: Settings
) -> Route | None:
    """The route for ``domain``: relay-to-host, backup MX, smart host or the engines."""
    if domain_record is not None:
        if domain_record.type is DomainType.RELAY and domain_record.delivery_host:
            return relay_route(domain_record, config)
        if domain_record.type is DomainType.BACKUP:
            return backup_route(domain_record, config)
        return None
    return _choose(domain, envelope, config)
