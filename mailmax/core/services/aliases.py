"""User aliases: addresses delivering to one or more targets (the CLI and the API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailmax.core.directory.errors import NotFound
from mailmax.core.services.actor import Actor, audit
from mailmax.core.services.users import require_address

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory


def list_aliases(
    directory: SQLDirectory, actor: Actor, domain: str | None = None
) -> list[tuple[str, list[str]]]:
    """The aliases (of ``domain``) that ``actor`` administers, sorted by address."""
    if domain:
        from mailmax.core.services.domains import get_domain

        domain = get_domain(directory, actor, domain).name
    found = directory.list_aliases(domain=domain)
    return [(a, list(t)) for a, t in found if actor.may_manage(a.rpartition("@")[2])]


def get_alias(directory: SQLDirectory, actor: Actor, address: str) -> list[str]:
    """The targets of the alias ``address``."""
    require_address(directory, actor, address)
    targets = directory.get_alias(address)
    if targets is None:
        raise NotFound(f"alias {address!r} does not exist")
    return list(targets)


def add_alias(directory: SQLDirectory, actor: Actor, address: str, targets: list[str]) -> None:
    """Add the alias ``address`` delivering to ``targets``."""
    require_address(directory, actor, address)
    directory.add_alias(address, list(targets))
    audit(directory, actor, "alias.add", address.lower(), targets=list(targets))


def edit_alias(directory: SQLDirectory, actor: Actor, address: str, targets: list[str]) -> None:
    """Replace the targets of the alias ``address``."""
    require_address(directory, actor, address)
    directory.edit_alias(address, list(targets))
    audit(directory, actor, "alias.edit", address.lower(), targets=list(targets))


def delete_alias(directory: SQLDirectory, actor: Actor, address: str) -> None:
    """Delete the alias ``address``."""
    get_alias(directory, actor, address)
    directory.delete_alias(address)
    audit(directory, actor, "alias.delete", address.lower())
