"""Administrators, API tokens and the audit log (``mailmax admin ...`` and the API)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mailmax.core.directory.admins import Admin, AdminStore, ApiToken, AuditEntry
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.services.actor import Actor, audit

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory

__all__ = ["Admin", "ApiToken", "AuditEntry"]

#: Longest lifetime of an API token, in days.
MAX_TOKEN_DAYS = 3650


def list_admins(directory: SQLDirectory, actor: Actor) -> list[Admin]:
    """Every administrator (system administrators only)."""
    actor.require_system("listing administrators")
    return AdminStore(directory).list_admins()


def grant(
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    *,
    system: bool = False,
    domains: tuple[str, ...] = (),
) -> Admin:
    """Give ``address`` system rights or the administration of ``domains``."""
    actor.require_system("granting administrator rights")
    admin = AdminStore(directory).grant(address, system=system, domains=tuple(domains))
    audit(directory, actor, "admin.grant", admin.address, system=system, domains=list(domains))
    return admin


def revoke(
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    *,
    system: bool = False,
    domains: tuple[str, ...] = (),
) -> Admin | None:
    """Take rights from ``address`` (all of them, with its tokens, when neither is given)."""
    actor.require_system("revoking administrator rights")
    left = AdminStore(directory).revoke(address, system=system, domains=tuple(domains))
    audit(directory, actor, "admin.revoke", address.lower(), system=system, domains=list(domains))
    return left


def create_token(
    directory: SQLDirectory, actor: Actor, address: str, name: str, days: float | None = None
) -> tuple[ApiToken, str]:
    """A new API token for ``address`` valid ``days`` (None: until revoked): (record, token).

    A system administrator makes tokens for anyone; others only for themselves."""
    if address.lower() != actor.name.lower():
        actor.require_system("making a token for another administrator")
    if days is not None and not 0 < days <= MAX_TOKEN_DAYS:
        raise DirectoryError(f"a token lives 1 day to {MAX_TOKEN_DAYS} days, not {days:g}")
    expires = time.time() + days * 86400 if days is not None else None
    token, secret = AdminStore(directory).create_token(address, name, expires)
    audit(directory, actor, "token.create", token.admin, token=token.id, name=token.name)
    return token, secret


def list_tokens(directory: SQLDirectory, actor: Actor, address: str = "") -> list[ApiToken]:
    """The API tokens (of ``address``); others than system administrators see their own."""
    if not actor.system:
        address = actor.name
    return AdminStore(directory).list_tokens(address)


def revoke_token(directory: SQLDirectory, actor: Actor, token_id: str) -> None:
    """Delete an API token (others than system administrators: only their own)."""
    store = AdminStore(directory)
    if not actor.system:
        own = {t.id for t in store.list_tokens(actor.name)}
        if token_id not in own:
            raise DirectoryError(f"no API token {token_id!r} of yours")
    store.revoke_token(token_id)
    audit(directory, actor, "token.revoke", token_id)


def audit_entries(
    directory: SQLDirectory, actor: Actor, *, since: float = 0.0, who: str = "", limit: int = 100
) -> list[AuditEntry]:
    """Recorded changes, newest first; others than system administrators see their own."""
    if not actor.system:
        who = actor.name
    return AdminStore(directory).audit_entries(since=since, actor=who, limit=limit)
