"""Domains and domain aliases: list, show, add, edit, delete (the CLI and the API)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmax.core.directory.api import DeleteMode, Domain, DomainType
from mailmax.core.directory.errors import DirectoryError, FieldError, NotFound
from mailmax.core.services.actor import Actor, audit

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory

#: Domain fields stored but not enforced by the server yet: refused, never silently kept.
NOT_ENFORCED = (
    "home_node",
    "session_send_mb",
    "session_send_messages",
    "over_limit_notice",
    "over_limit_threshold",
)


def refuse_not_enforced(fields: dict[str, Any]) -> None:
    """Refuse a field the server does not enforce yet (a FieldError naming it)."""
    for name in NOT_ENFORCED:
        if fields.get(name) not in (None, "", 0, "none"):
            raise FieldError(
                name,
                "{field} is not enforced yet: the server would store the value and ignore "
                "it, so it is refused; nothing was changed",
            )
    if fields.get("type") in (DomainType.CLUSTERED, DomainType.CLUSTERED.value):
        raise FieldError(
            "type",
            "{field} clustered is not enforced yet: the server would store the value and "
            "ignore it, so it is refused; nothing was changed",
        )


def mail_path(settings: Settings, mail_dir: str) -> Path:
    """A domain's mail directory as an absolute path (relative ones are in the data directory)."""
    return settings.path(mail_dir)


def list_domains(
    directory: SQLDirectory,
    actor: Actor,
    *,
    name_filter: str = "",
    type: DomainType | None = None,
) -> list[Domain]:
    """The domains ``actor`` administers whose name contains ``name_filter``, sorted by name."""
    found = directory.list_domains(name_filter=name_filter, type=type)
    return [d for d in found if actor.may_manage(d.name)]


def get_domain(directory: SQLDirectory, actor: Actor, name: str) -> Domain:
    """The domain ``name`` (or the domain it is an alias of)."""
    domain = directory.get_domain(name)
    actor.require_domain(domain.name if domain is not None else name)
    if domain is None:
        raise NotFound(f"domain {name!r} is not served here; check the spelling")
    return domain


def count_users(directory: SQLDirectory, domain: Domain) -> int:
    """How many users ``domain`` has."""
    return len(directory.list_users(domain=domain.name))


def add_domain(
    directory: SQLDirectory,
    settings: Settings,
    actor: Actor,
    name: str,
    mail_dir: str | None = None,
    **fields: Any,
) -> Domain:
    """Add the domain ``name`` and create its mail directory (default DATA_DIR/mail/NAME)."""
    from mailmax.core.directory.loginnames import check_domain_name

    actor.require_system("adding a domain")
    refuse_not_enforced(fields)
    canonical = check_domain_name(name)
    default = settings.data_dir / "mail" / canonical
    target = mail_path(settings, mail_dir) if mail_dir else default
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)  # fails early on a path mail cannot be written to
    try:
        domain = directory.add_domain(canonical, str(target), **fields)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    audit(directory, actor, "domain.add", domain.name, mail_dir=domain.mail_dir, **fields)
    return domain


def edit_domain(
    directory: SQLDirectory,
    settings: Settings,
    actor: Actor,
    name: str,
    mail_dir: str | None = None,
    **fields: Any,
) -> Domain:
    """Change the fields given of the domain ``name``."""
    domain = get_domain(directory, actor, name)
    refuse_not_enforced(fields)
    if mail_dir is not None:
        actor.require_system("moving a domain's mail directory")
        fields["mail_dir"] = str(mail_path(settings, mail_dir))
    if not fields:
        raise DirectoryError("nothing to change; give at least one field")
    changed = directory.edit_domain(domain.name, **fields)
    audit(directory, actor, "domain.edit", changed.name, **fields)
    return changed


def delete_domain(directory: SQLDirectory, actor: Actor, name: str, mode: DeleteMode) -> Domain:
    """Delete the domain ``name`` with its users and aliases; ``mode`` says what becomes of
    its mail. Returns the domain as it was."""
    actor.require_system("deleting a domain")
    domain = get_domain(directory, actor, name)
    directory.delete_domain(domain.name, DeleteMode(mode))
    audit(directory, actor, "domain.delete", domain.name, mode=DeleteMode(mode).value)
    return domain


def list_domain_aliases(directory: SQLDirectory, actor: Actor) -> list[dict[str, str]]:
    """The domain aliases of the domains ``actor`` administers, sorted by alias."""
    rows = [
        {"alias": alias, "domain": d.name}
        for d in list_domains(directory, actor)
        for alias in d.aliases
    ]
    return sorted(rows, key=lambda r: r["alias"])


def add_domain_alias(directory: SQLDirectory, actor: Actor, alias: str, domain: str) -> None:
    """Make ``alias`` another name of ``domain``."""
    actor.require_domain(domain)
    directory.add_domain_alias(alias, domain)
    audit(directory, actor, "domain.alias.add", alias.lower(), domain=domain.lower())


def remove_domain_alias(directory: SQLDirectory, actor: Actor, alias: str) -> None:
    """Remove the domain alias ``alias`` (the domain and its mail are untouched)."""
    if not actor.system:
        owner = directory.get_domain(alias)
        actor.require_domain(owner.name if owner is not None else alias)
    directory.remove_domain_alias(alias)
    audit(directory, actor, "domain.alias.delete", alias.lower())
