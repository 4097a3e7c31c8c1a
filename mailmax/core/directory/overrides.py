"""Per-domain and per-user plugin overrides, and login tracking, of the SQL directory.

Mixed into :class:`mailmax.core.directory.sql.SQLDirectory`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from mailmax.core.directory import queries as q
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.directory.schema import domains, logins, plugin_overrides, users

SCOPE_KINDS = ("domain", "user")


class OverridesMixin:
    """Plugin overrides per domain and user; login records per user."""

    #: Login records kept per user (older ones are dropped).
    LOGINS_KEPT = 20

    _tx: Callable[..., contextlib.AbstractContextManager[sa.Connection]]

    # --- plugin overrides ----------------------------------------------------------------------

    def get_plugin_overrides(self, plugin: str) -> dict[tuple[str, str], tuple[bool | None, dict]]:
        """Every override of ``plugin``: ``{(kind, name): (enabled or None, settings)}``.

        ``kind`` is ``"domain"`` (name: the domain) or ``"user"`` (name: ``user@domain``);
        ``enabled`` None means the scope inherits on/off from the level above.
        """
        user_domains = domains.alias("user_domains")
        query = (
            sa.select(
                plugin_overrides.c.enabled,
                plugin_overrides.c.settings,
                domains.c.name.label("domain"),
                users.c.name.label("user"),
                user_domains.c.name.label("user_domain"),
            )
            .select_from(plugin_overrides)
            .outerjoin(domains, plugin_overrides.c.domain_id == domains.c.id)
            .outerjoin(users, plugin_overrides.c.user_id == users.c.id)
            .outerjoin(user_domains, users.c.domain_id == user_domains.c.id)
            .where(plugin_overrides.c.plugin == plugin)
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        result: dict[tuple[str, str], tuple[bool | None, dict]] = {}
        for row in rows:
            key = (
                ("domain", row.domain) if row.domain else ("user", f"{row.user}@{row.user_domain}")
            )
            enabled = None if row.enabled is None else bool(row.enabled)
            result[key] = (enabled, dict(row.settings or {}))
        return result

    def set_plugin_override(
        self,
        plugin: str,
        scope_kind: str,
        scope_name: str,
        *,
        enabled: bool | None = None,
        settings: dict | None = None,
    ) -> None:
        """Set a plugin's override for a domain or a user (both values are replaced).

        ``enabled`` None inherits on/off; ``settings`` (JSON-compatible) are merged over the
        level above by the plugin platform. With neither, the override is removed.
        """
        if not isinstance(plugin, str) or not plugin.strip() or len(plugin) > 100:
            raise DirectoryError(f"plugin name {plugin!r} must be 1 to 100 characters")
        if scope_kind not in SCOPE_KINDS:
            raise DirectoryError(f"scope kind {scope_kind!r} must be 'domain' or 'user'")
        settings = dict(settings or {})
        try:
            settings = json.loads(json.dumps(settings))
        except (TypeError, ValueError) as exc:
            raise DirectoryError(f"settings for {plugin} must be JSON-compatible: {exc}") from None
        with self._tx(write=True) as conn:
            if scope_kind == "domain":
                column, owner = "domain_id", q.require_domain(conn, scope_name)["id"]
            else:
                column, owner = "user_id", q.require_user(conn, scope_name)[0]["id"]
            conn.execute(
                sa.delete(plugin_overrides).where(
                    plugin_overrides.c.plugin == plugin, plugin_overrides.c[column] == owner
                )
            )
            if enabled is not None or settings:
                conn.execute(
                    sa.insert(plugin_overrides).values(
                        plugin=plugin,
                        enabled=None if enabled is None else bool(enabled),
                        settings=settings,
                        updated=time.time(),
                        **{column: owner},
                    )
                )

    # --- login tracking -------------------------------------------------------------------

    def record_login(self, address: str, service: str, ip: str) -> None:
        """Note a successful login; the newest :attr:`LOGINS_KEPT` per user are kept.

        A user deleted meanwhile is ignored.
        """
        self.record_logins([(address, service, ip, time.time())])

    def record_logins(self, records: Iterable[tuple[str, str, str, float]]) -> None:
        """Note several successful logins, ``(address, service, ip, unix time)`` each, in one
        transaction; the newest :attr:`LOGINS_KEPT` per user are kept. Users deleted
        meanwhile are ignored."""
        with self._tx(write=True, lock=False) as conn:
            user_ids: dict[str, int | None] = {}
            for address, service, ip, at in records:
                if address not in user_ids:
                    found = q.find_user(conn, address)
                    user_ids[address] = None if found is None else found[0]["id"]
                user_id = user_ids[address]
                if user_id is None:
                    continue
                conn.execute(
                    sa.insert(logins).values(
                        user_id=user_id, service=str(service)[:16], ip=str(ip)[:64], at=at
                    )
                )
            for user_id in {found for found in user_ids.values() if found is not None}:
                newest = (
                    sa.select(logins.c.id)
                    .where(logins.c.user_id == user_id)
                    .order_by(logins.c.at.desc(), logins.c.id.desc())
                    .limit(self.LOGINS_KEPT)
                )
                conn.execute(
                    sa.delete(logins).where(logins.c.user_id == user_id, logins.c.id.not_in(newest))
                )

    def last_login(self, address: str) -> tuple[str, str, float] | None:
        """``(service, ip, unix time)`` of the user's newest login, or None."""
        found = self.logins(address, limit=1)
        return found[0] if found else None

    def logins(self, address: str, limit: int = 20) -> list[tuple[str, str, float]] | None:
        """The user's recorded logins, newest first, as ``(service, ip, unix time)``; None
        when there is no such user."""
        with self._tx() as conn:
            found = q.find_user(conn, address)
            if found is None:
                return None
            rows = conn.execute(
                sa.select(logins.c.service, logins.c.ip, logins.c.at)
                .where(logins.c.user_id == found[0]["id"])
                .order_by(logins.c.at.desc(), logins.c.id.desc())
                .limit(limit)
            ).all()
            return [(row.service, row.ip, float(row.at)) for row in rows]
