"""``mailmax ldap test ADDRESS``: what MailMax finds in LDAP for an address, and why."""

from __future__ import annotations

from typing import Any

import click

from mailmax.core.cli.context import CLIError, app, common_options
from mailmax.core.directory.errors import DirectoryUnavailable


@click.group("ldap")
def ldap_group() -> None:
    """LDAP user sources."""


@ldap_group.command("test")
@click.argument("address")
@click.option(
    "--password-prompt", is_flag=True, help="Also check a password (asked for, never echoed)."
)
@common_options
def test_command(address: str, password_prompt: bool) -> None:
    """Show what MailMax finds for ADDRESS: its domain's user source, the LDAP filter used,
    the entry found and the user it makes, and what mail to ADDRESS would do.

    Exit status 1 when the address is not a user of an LDAP domain or LDAP does not answer.
    """
    state = app()
    directory = state.directory()
    local, _, domain_name = address.rpartition("@")
    domain = directory.get_domain(domain_name) if local else None
    if domain is None:
        raise CLIError(f"{address!r} is not an address of a domain served here")
    if not domain.user_source:
        raise CLIError(
            f"the users of {domain.name} are kept in SQL, not LDAP; see `mailmax user show"
            f" {address}` (set an LDAP source with `mailmax domain edit {domain.name}"
            " --user-source ldap:NAME`)"
        )
    report: dict[str, Any] = {"address": address, "user_source": domain.user_source}
    try:
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
                if password_prompt:
                    password = click.prompt("password", hide_input=True, err=True)
                    good = source.check_password(entry, password)
                    report["password"] = "accepted" if good else "refused"
        lookup = directory.lookup_recipient(address)
        report["lookup"] = lookup.status.value
    except DirectoryUnavailable as exc:
        raise CLIError(str(exc)) from None
    state.out.record(report)
    if report.get("lookup") not in ("user", "catch_all", "alias"):
        raise click.exceptions.Exit(1)
