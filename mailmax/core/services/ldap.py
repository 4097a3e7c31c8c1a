"""What MailMax finds in LDAP for an address, and why (the CLI, the API, the web admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.directory.errors import DirectoryError, NotFound
from mailmax.core.services.actor import Actor

if TYPE_CHECKING:
    from mailmax.core.directory.mixed import Directory

#: What a lookup ends in when mail to the address is accepted.
ACCEPTED = ("user", "catch_all", "alias")


class NotInLdap(DirectoryError):
    """The address's domain keeps its users in SQL, not LDAP."""


def ldap_report(
    directory: Directory, actor: Actor, address: str, password: str | None = None
) -> dict[str, Any]:
    """The domain's user source, the LDAP filter used, the entry found and the user it makes,
    and what mail to ``address`` would do (``lookup``); with ``password``, whether LDAP
    accepts it. DirectoryUnavailable when LDAP does not answer."""
    local, _, domain_name = address.rpartition("@")
    if local:
        actor.require_domain(domain_name.lower())
    domain = directory.get_domain(domain_name) if local else None
    if domain is None:
        raise NotFound(f"{address!r} is not an address of a domain served here")
    if not domain.user_source:
        raise NotInLdap(
            f"the users of {domain.name} are kept in SQL, not LDAP; see `mailmax user show"
            f" {address}` (set an LDAP source with `mailmax domain edit {domain.name}"
            " --user-source ldap:NAME`)"
        )
    report: dict[str, Any] = {"address": address, "user_source": domain.user_source}
    source = directory.ldap_source_of(domain)
    assert source is not None
    settings = source.settings
    report["servers"] = ", ".join(settings.urls)
    report["base_dn"] = settings.base_dn
    wanted = f"{local.lower()}@{domain.name}"
    report["filter"] = source.address_filter_for(wanted)
    entries = source.find_by_address(wanted)
    report["entries_found"] = len(entries)
    report["dn"] = entries[0].dn if entries else ""
    if len(entries) > 1:
        report["why"] = "more than one entry matches: MailMax never picks one; fix LDAP"
    elif not entries:
        report["why"] = "no entry matches the filter: mail to the address is refused"
    else:
        entry = entries[0]
        user = directory.ldap_user(domain, entry)
        report["attributes"] = "; ".join(
            f"{key}={','.join(values)}" for key, values in sorted(entry.raw.items()) if values
        )
        if user is None:
            report["why"] = (
                f"the entry has no address in {domain.name} (its addresses:"
                f" {', '.join(entry.addresses) or 'none'})"
            )
        else:
            report["mailbox"] = user.address
            report["enabled"] = user.enabled
            report["quota_mb"] = user.disk_limit_mb
            report["home_node"] = user.home_node
            if user.forward_to_source:
                report["forward_to"] = ", ".join(user.forward_to) or "none"
                report["forward_to_source"] = (
                    f"{user.forward_to_source}; the forwarding plugin's targets for this"
                    f" user (see `mailmax plugin show forwarding --user {user.address}`)"
                )
            report["why"] = (
                f"mail to {address} is delivered to {user.address}"
                if user.enabled
                else "the account is disabled in LDAP: mail is refused, log-ins fail"
            )
            if password is not None:
                good = source.check_password(entry, password)
                report["password"] = "accepted" if good else "refused"
    report["lookup"] = directory.lookup_recipient(address).status.value
    return report
