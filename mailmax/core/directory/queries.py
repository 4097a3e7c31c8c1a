"""Row-level look-ups shared by the directory's operations; each takes an open connection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from mailmax.core.directory.api import Domain, User
from mailmax.core.directory.errors import DirectoryError, NotFound
from mailmax.core.directory.fields import domain_from_row, user_from_row
from mailmax.core.directory.loginnames import check_domain_name, check_user_name
from mailmax.core.directory.schema import alias_targets, aliases, domain_aliases, domains, users

Row = Mapping[Any, Any]


def canonical_domain(name: str) -> str | None:
    """The canonical form of a domain name, or None when it is not a valid name."""
    try:
        return check_domain_name(name)
    except DirectoryError:
        return None


def split_address(address: str) -> tuple[str, str]:
    """``(local part, domain)`` of ``user@domain``; DirectoryError when it is not one."""
    if not isinstance(address, str):
        raise DirectoryError(f"{address!r} is not an address; write it as user@domain")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise DirectoryError(f"{address!r} is not an address; write it as user@domain")
    return local, domain


def find_domain(conn: sa.Connection, name: str) -> Row | None:
    """The ``domains`` row named ``name`` or aliased by it (canonical name expected)."""
    aliased = sa.select(domain_aliases.c.domain_id).where(domain_aliases.c.name == name)
    query = sa.select(domains).where(sa.or_(domains.c.name == name, domains.c.id.in_(aliased)))
    return conn.execute(query).mappings().first()


def domain_by_id(conn: sa.Connection, domain_id: int) -> Row:
    """The ``domains`` row with this id (which must exist)."""
    return conn.execute(sa.select(domains).where(domains.c.id == domain_id)).mappings().one()


def require_domain(conn: sa.Connection, name: str) -> Row:
    """The domain row for ``name`` (or a domain alias); NotFound saying how to fix it."""
    row = find_domain(conn, check_domain_name(name))
    if row is None:
        raise NotFound(
            f"domain {name!r} is not served here; add it first (mailmax domain add) "
            "or check the spelling"
        )
    return row


def domain_aliases_of(conn: sa.Connection, domain_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """Domain aliases per domain id, each tuple sorted."""
    ids = list(domain_ids)
    result: dict[int, list[str]] = {domain_id: [] for domain_id in ids}
    if ids:
        query = (
            sa.select(domain_aliases.c.domain_id, domain_aliases.c.name)
            .where(domain_aliases.c.domain_id.in_(ids))
            .order_by(domain_aliases.c.name)
        )
        for domain_id, name in conn.execute(query):
            result[domain_id].append(name)
    return {domain_id: tuple(names) for domain_id, names in result.items()}


def make_domain(conn: sa.Connection, row: Row) -> Domain:
    """The Domain for a ``domains`` row, with its aliases."""
    return domain_from_row(row, domain_aliases_of(conn, [row["id"]])[row["id"]])


def user_row(conn: sa.Connection, domain_id: int, name: str) -> Row | None:
    """The ``users`` row of ``name`` (lower case) in a domain."""
    query = sa.select(users).where(users.c.domain_id == domain_id, users.c.name == name)
    return conn.execute(query).mappings().first()


def find_user(conn: sa.Connection, address: str) -> tuple[Row, Row] | None:
    """``(user row, domain row)`` for ``user@domain`` (domain alias allowed), or None."""
    try:
        local, domain = split_address(address)
        name = check_user_name(local)
    except DirectoryError:
        return None
    canonical = canonical_domain(domain)
    drow = find_domain(conn, canonical) if canonical else None
    if drow is None:
        return None
    urow = user_row(conn, drow["id"], name)
    return (urow, drow) if urow is not None else None


def require_user(conn: sa.Connection, address: str) -> tuple[Row, Row]:
    """Like :func:`find_user`, raising NotFound (or DirectoryError for a malformed address)."""
    local, domain = split_address(address)
    check_user_name(local)
    drow = require_domain(conn, domain)
    urow = user_row(conn, drow["id"], local.lower())
    if urow is None:
        raise NotFound(
            f"user {local.lower()}@{drow['name']} does not exist; add it first "
            "(mailmax user add) or check the spelling"
        )
    return urow, drow


def make_user(urow: Row, drow: Row) -> User:
    """The User for a ``users`` row and its domain's row."""
    return user_from_row(urow, drow["name"])


def user_by_id(conn: sa.Connection, user_id: int) -> Row:
    """The ``users`` row with this id (which must exist)."""
    return conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().one()


def inserted_id(result: sa.CursorResult) -> int:
    """The primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def alias_row(conn: sa.Connection, domain_id: int, name: str) -> Row | None:
    """The ``aliases`` row of ``name`` in a domain."""
    query = sa.select(aliases).where(aliases.c.domain_id == domain_id, aliases.c.name == name)
    return conn.execute(query).mappings().first()


def targets_of(conn: sa.Connection, alias_ids: Iterable[int]) -> dict[int, list[str]]:
    """Targets per alias id, in their stored order."""
    ids = list(alias_ids)
    result: dict[int, list[str]] = {alias_id: [] for alias_id in ids}
    if ids:
        query = (
            sa.select(alias_targets.c.alias_id, alias_targets.c.target)
            .where(alias_targets.c.alias_id.in_(ids))
            .order_by(alias_targets.c.alias_id, alias_targets.c.position)
        )
        for alias_id, target in conn.execute(query):
            result[alias_id].append(target)
    return result
