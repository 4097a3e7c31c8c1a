"""Users, their passwords and forwarding (the CLI and the API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailmax.core.directory.api import AccountType, DeleteMode, User
from mailmax.core.directory.errors import FieldError, NotFound
from mailmax.core.services.actor import Actor, audit

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory

#: User fields stored but not enforced by the server yet: refused, never silently kept.
NOT_ENFORCED = ("daily_send_messages", "daily_send_mb", "daily_limits_enabled")


def domain_of(directory: SQLDirectory, address: str) -> str:
    """The canonical domain of ``address`` (a domain alias stands for its domain)."""
    part = address.rpartition("@")[2].lower()
    found = directory.get_domain(part) if part else None
    return found.name if found is not None else part


def require_address(directory: SQLDirectory, actor: Actor, address: str) -> None:
    """Refuse unless ``actor`` administers the domain of ``address``."""
    if not actor.system:
        actor.require_domain(domain_of(directory, address))


def refuse_not_enforced(fields: dict[str, Any]) -> None:
    """Refuse a field the server does not enforce yet (a FieldError naming it)."""
    for name in NOT_ENFORCED:
        if fields.get(name) not in (None, 0, False):
            raise FieldError(
                name,
                "{field} is not enforced yet: the server would store the value and ignore "
                "it, so it is refused; nothing was changed",
            )


def list_users(
    directory: SQLDirectory,
    actor: Actor,
    *,
    domain: str | None = None,
    name_filter: str = "",
    account_type: AccountType | None = None,
) -> list[User]:
    """Users (of ``domain``) that ``actor`` administers, sorted by domain then name."""
    if domain:
        from mailmax.core.services.domains import get_domain

        domain = get_domain(directory, actor, domain).name
    found = directory.list_users(domain=domain, name_filter=name_filter, account_type=account_type)
    return [u for u in found if actor.may_manage(u.domain)]


def get_user(directory: SQLDirectory, actor: Actor, address: str) -> User:
    """The user at ``address``."""
    require_address(directory, actor, address)
    user = directory.get_user(address)
    if user is None:
        raise NotFound(f"user {address!r} does not exist")
    return user


def switch_virus_check(directory: SQLDirectory, address: str, on: bool | None) -> None:
    """Make the user's virus-check switch the antivirus plugin's switch for them (its
    settings for the user are kept)."""
    if on is None:
        return
    overrides = directory.get_plugin_overrides("antivirus")
    _, settings = overrides.get(("user", address), (None, {}))
    directory.set_plugin_override("antivirus", "user", address, enabled=on, settings=settings)


def add_user(
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    password: str | None,
    *,
    keep_clear: bool = False,
    **fields: Any,
) -> User:
    """Add the user ``address``; no password means a blank one (the domain's policy)."""
    require_address(directory, actor, address)
    refuse_not_enforced(fields)
    user = directory.add_user(address, password, keep_clear=keep_clear, **fields)
    switch_virus_check(directory, user.address, fields.get("virus_check"))
    audit(directory, actor, "user.add", user.address, password=bool(password), **fields)
    return user


def edit_user(directory: SQLDirectory, actor: Actor, address: str, **fields: Any) -> User:
    """Change the fields given of the user ``address``."""
    get_user(directory, actor, address)
    refuse_not_enforced(fields)
    user = directory.edit_user(address, **fields)
    switch_virus_check(directory, user.address, fields.get("virus_check"))
    audit(directory, actor, "user.edit", user.address, **fields)
    return user


def set_password(
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    password: str | None,
    *,
    keep_clear: bool | None = None,
) -> User:
    """Set (None: blank) the password of ``address``; ``keep_clear`` None keeps the choice."""
    user = get_user(directory, actor, address)
    directory.set_password(user.address, password, keep_clear=keep_clear)
    audit(directory, actor, "user.password", user.address, blank=password is None)
    return user


def delete_user(directory: SQLDirectory, actor: Actor, address: str, mode: DeleteMode) -> User:
    """Delete the user ``address``; ``mode`` says what becomes of its mail."""
    user = get_user(directory, actor, address)
    directory.delete_user(user.address, DeleteMode(mode))
    audit(directory, actor, "user.delete", user.address, mode=DeleteMode(mode).value)
    return user
