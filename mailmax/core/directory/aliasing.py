"""User aliases and forwarding targets of the SQL directory.

Mixed into :class:`mailmax.core.directory.sql.SQLDirectory`. Targets are addresses; a target
without ``@`` is in the owner's domain; local targets are stored in canonical form.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import sqlalchemy as sa

from mailmax.core.directory import queries as q
from mailmax.core.directory.api import DomainType
from mailmax.core.directory.errors import AlreadyExists, DirectoryError, NotFound
from mailmax.core.directory.loginnames import check_target, check_user_name
from mailmax.core.directory.schema import alias_targets, aliases, domains, forward_targets, forwards

MAX_TARGETS = 1000
#: Aliases followed at most when looking for a loop (beyond that, delivery still stops one).
MAX_LOOP_CHECK = 10000
#: Domain types whose users have mailboxes here; mail for the others is passed on.
MAILBOX_DOMAIN_TYPES = frozenset({DomainType.NORMAL, DomainType.CLUSTERED})


class AliasMixin:
    """User aliases and per-user forwarding."""

    _tx: Callable[..., contextlib.AbstractContextManager[sa.Connection]]

    # --- user aliases ---------------------------------------------------------------------

    def add_alias(self, address: str, targets: list[str]) -> None:
        """Add a user alias delivering to ``targets``.

        The alias's domain must be served here (a domain alias stands for its domain); a target
        without ``@`` is in the alias's domain. Refused when a user or an alias has the name.
        """
        local, domain = q.split_address(address)
        name = check_user_name(local)
        with self._tx(write=True) as conn:
            drow = q.require_domain(conn, domain)
            full = f"{name}@{drow['name']}"
            if q.user_row(conn, drow["id"], name) is not None:
                raise AlreadyExists(
                    f"{full} is a user; an alias may not collide with a user "
                    "(delete the user first or pick another alias name)"
                )
            if q.alias_row(conn, drow["id"], name) is not None:
                raise AlreadyExists(f"alias {full} already exists; edit it to change its targets")
            checked = self._check_targets(conn, targets, drow["name"], full)
            self._check_no_loop(conn, full, checked)
            now = time.time()
            result = conn.execute(
                sa.insert(aliases).values(domain_id=drow["id"], name=name, created=now, updated=now)
            )
            self._store_targets(conn, alias_targets, "alias_id", q.inserted_id(result), checked)

    def get_alias(self, address: str) -> list[str] | None:
        """The targets of the alias at ``address``, or None."""
        with self._tx() as conn:
            row = self._find_alias(conn, address)
            return q.targets_of(conn, [row["id"]])[row["id"]] if row else None

    def list_aliases(self, domain: str | None = None) -> list[tuple[str, list[str]]]:
        """``(alias address, targets)`` pairs, sorted by address."""
        query = (
            sa.select(aliases.c.id, aliases.c.name, domains.c.name.label("domain_name"))
            .join(domains, aliases.c.domain_id == domains.c.id)
            .order_by(domains.c.name, aliases.c.name)
        )
        with self._tx() as conn:
            if domain is not None:
                query = query.where(aliases.c.domain_id == q.require_domain(conn, domain)["id"])
            rows = conn.execute(query).all()
            targets = q.targets_of(conn, [row.id for row in rows])
        return [(f"{row.name}@{row.domain_name}", targets[row.id]) for row in rows]

    def edit_alias(self, address: str, targets: list[str]) -> None:
        """Replace an alias's targets."""
        with self._tx(write=True) as conn:
            row = self._require_alias(conn, address)
            drow = q.domain_by_id(conn, row["domain_id"])
            full = f"{row['name']}@{drow['name']}"
            checked = self._check_targets(conn, targets, drow["name"], full)
            self._check_no_loop(conn, full, checked)
            conn.execute(sa.delete(alias_targets).where(alias_targets.c.alias_id == row["id"]))
            conn.execute(
                sa.update(aliases).where(aliases.c.id == row["id"]).values(updated=time.time())
            )
            self._store_targets(conn, alias_targets, "alias_id", row["id"], checked)

    def delete_alias(self, address: str) -> None:
        """Delete a user alias."""
        with self._tx(write=True) as conn:
            row = self._require_alias(conn, address)
            conn.execute(sa.delete(aliases).where(aliases.c.id == row["id"]))

    def _find_alias(self, conn: sa.Connection, address: str) -> q.Row | None:
        try:
            local, domain = q.split_address(address)
        except DirectoryError:
            return None
        canonical = q.canonical_domain(domain)
        drow = q.find_domain(conn, canonical) if canonical else None
        return q.alias_row(conn, drow["id"], local.lower()) if drow else None

    def _require_alias(self, conn: sa.Connection, address: str) -> q.Row:
        local, domain = q.split_address(address)
        drow = q.require_domain(conn, domain)
        row = q.alias_row(conn, drow["id"], local.lower())
        if row is None:
            raise NotFound(f"{local.lower()}@{drow['name']} is not an alias; add it first")
        return row

    def _check_targets(
        self, conn: sa.Connection, targets: list[str], domain: str, own: str, *, empty: bool = False
    ) -> list[str]:
        """The targets in canonical form; DirectoryError saying what is wrong with one.

        A target in a domain with mailboxes here must be a user or an alias there; any other
        target must be a full address in a domain of two labels or more.
        """
        if isinstance(targets, str):
            targets = [part for part in targets.replace(";", ",").split(",") if part.strip()]
        if not targets and not empty:
            raise DirectoryError(f"{own} needs at least one target address")
        if len(targets) > MAX_TARGETS:
            raise DirectoryError(f"{own} has more than {MAX_TARGETS} targets")
        result: list[str] = []
        for target in targets:
            checked = self._check_target(conn, target, domain, own)
            if checked not in result:
                result.append(checked)
        return result

    @staticmethod
    def _check_target(conn: sa.Connection, target: str, domain: str, own: str) -> str:
        checked = check_target(target, domain)
        local, _, target_domain = checked.rpartition("@")
        row = q.find_domain(conn, target_domain)
        given = target.strip()
        shown = given if given == checked else f"{given!r} ({checked})"
        if row is None:
            if "." not in target_domain:
                raise DirectoryError(
                    f"target {shown} is not a full address: its domain has a single label; "
                    "give a local user or alias, or an address such as name@example.com"
                )
            return checked
        if DomainType(row["type"]) not in MAILBOX_DOMAIN_TYPES:
            return checked  # a relay, backup or ETRN domain: its mail is passed on
        if row["user_source"]:
            return checked  # its users are in LDAP, looked up when mail comes
        name = local.lower()
        if f"{name}@{row['name']}" == own:
            raise DirectoryError(f"{own} cannot point to itself")
        if q.user_row(conn, row["id"], name) is None and q.alias_row(conn, row["id"], name) is None:
            raise NotFound(
                f"target {shown} is neither a user nor an alias of {row['name']}; add it first "
                f"(mailmax user add {name}@{row['name']}) or check the spelling"
            )
        return f"{name}@{row['name']}"

    @staticmethod
    def _check_no_loop(conn: sa.Connection, own: str, targets: list[str]) -> None:
        """Refuse targets through which mail to the alias ``own`` would come back to it."""
        paths: list[list[str]] = [[own, target] for target in targets]
        seen = {own}
        while paths:
            path = paths.pop()
            address = path[-1]
            if address == own:
                raise DirectoryError(
                    f"{' -> '.join(path)} would be a loop: mail to {own} would come back to "
                    "it; point one of these aliases elsewhere"
                )
            if address in seen or len(seen) > MAX_LOOP_CHECK:
                continue
            seen.add(address)
            local, _, domain = address.rpartition("@")
            row = q.find_domain(conn, domain)
            alias = q.alias_row(conn, row["id"], local) if row is not None else None
            if alias is not None:
                paths += [
                    [*path, next_hop] for next_hop in q.targets_of(conn, [alias["id"]])[alias["id"]]
                ]

    @staticmethod
    def _store_targets(
        conn: sa.Connection, table: sa.Table, key: str, owner_id: int, targets: list[str]
    ) -> None:
        if targets:
            conn.execute(
                sa.insert(table),
                [{key: owner_id, "position": i, "target": t} for i, t in enumerate(targets)],
            )

    # --- forwards -----------------------------------------------------------------------------

    def set_forward(
        self,
        address: str,
        targets: list[str],
        *,
        enabled: bool = True,
        keep_local_copy: bool = True,
    ) -> None:
        """Set a user's forwarding: targets (local or remote), on/off, keep a local copy.

        A target without ``@`` is in the user's domain. Targets may be empty only when disabled.
        """
        with self._tx(write=True) as conn:
            urow, drow = q.require_user(conn, address)
            own = f"{urow['name']}@{drow['name']}"
            checked = self._check_targets(conn, targets, drow["name"], own, empty=not enabled)
            conn.execute(sa.delete(forwards).where(forwards.c.user_id == urow["id"]))
            conn.execute(
                sa.insert(forwards).values(
                    user_id=urow["id"],
                    enabled=bool(enabled),
                    keep_local_copy=bool(keep_local_copy),
                    updated=time.time(),
                )
            )
            self._store_targets(conn, forward_targets, "user_id", urow["id"], checked)

    def get_forward(self, address: str) -> tuple[bool, list[str], bool] | None:
        """``(enabled, targets, keep_local_copy)`` for a user, or None when it has none."""
        with self._tx() as conn:
            found = q.find_user(conn, address)
            if found is None:
                return None
            user_id = found[0]["id"]
            row = conn.execute(sa.select(forwards).where(forwards.c.user_id == user_id)).first()
            if row is None:
                return None
            targets = conn.execute(
                sa.select(forward_targets.c.target)
                .where(forward_targets.c.user_id == user_id)
                .order_by(forward_targets.c.position)
            ).scalars()
            return bool(row.enabled), list(targets), bool(row.keep_local_copy)

    def delete_forward(self, address: str) -> None:
        """Remove a user's forwarding altogether (no error when it has none)."""
        with self._tx(write=True) as conn:
            urow, _ = q.require_user(conn, address)
            conn.execute(sa.delete(forwards).where(forwards.c.user_id == urow["id"]))
