"""Administrators, their API tokens, sessions and the audit log, stored in the directory database.

An administrator is a user of the directory (``user@domain``) with rights: a *system*
administrator may do everything, a *domain* administrator only what concerns the domains
they are given. Deleting the user or a domain removes the rights that hung on it.

API tokens look like ``mmx_<id>_<secret>``; only a SHA-256 of the whole token is kept (the
secret is 256 random bits, so a slow hash adds nothing), and the token is shown once, when
it is made.

Session tokens (``mms_...``, from a password log-in) are kept the same way, hashed, with an
expiry that moves on as they are used; being in the directory, they outlive a restart and
every node of a cluster knows them. Signing out, a new password and losing the rights end them;
so does a password changed in LDAP, for an administrator whose password is kept there (see
:mod:`mailmax.core.directory.passwordmarks`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mailmax.core.directory import passwordmarks
from mailmax.core.directory import schema as t
from mailmax.core.directory.engine import transaction
from mailmax.core.directory.errors import DirectoryError, NotFound

if TYPE_CHECKING:
    from mailmax.core.directory.sql import SQLDirectory

TOKEN_PREFIX = "mmx_"
SESSION_PREFIX = "mms_"
#: A session's expiry is written again only when it moves on by more than this (seconds).
SESSION_TOUCH_SECONDS = 60.0
#: Most audit entries one listing returns.
MAX_AUDIT_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class Admin:
    """An administrator: a user and what they may administer."""

    address: str
    system: bool
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as listed (never with its secret)."""

    id: str
    admin: str
    name: str
    created: float
    expires: float | None = None
    last_used: float | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded change: who did what to what, when and from where."""

    id: int
    at: float
    actor: str
    origin: str
    action: str
    target: str
    detail: dict[str, Any]


def token_hash(token: str) -> str:
    """The stored form of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def end_sessions_of_user(conn: sa.Connection, user_id: int) -> None:
    """End the sessions of the user ``user_id`` (when they are an administrator), in the
    caller's transaction."""
    admin_ids = sa.select(t.admins.c.id).where(t.admins.c.user_id == user_id)
    conn.execute(t.admin_sessions.delete().where(t.admin_sessions.c.admin_id.in_(admin_ids)))


class AdminStore:
    """Administrators, tokens and audit entries of one :class:`SQLDirectory` (blocking)."""

    def __init__(self, directory: SQLDirectory, clock: Any = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def _tx(self, write: bool = False) -> Any:
        return transaction(self.directory.engine, write=write)

    # --- administrators ------------------------------------------------------------------------
    def _user_id(self, conn: sa.Connection, address: str) -> tuple[int, str]:
        name, _, domain = address.strip().rpartition("@")
        if not name or not domain:
            raise DirectoryError(f"give the administrator as user@domain, not {address!r}")
        row = conn.execute(
            sa.select(t.users.c.id, t.users.c.name, t.domains.c.name.label("domain"))
            .join(t.domains, t.users.c.domain_id == t.domains.c.id)
            .where(t.users.c.name == name.lower(), t.domains.c.name == domain.lower())
        ).first()
        if row is None:
            raise NotFound(f"user {name.lower()}@{domain.lower()} does not exist")
        return row.id, f"{row.name}@{row.domain}"

    def _domain_id(self, conn: sa.Connection, name: str) -> int:
        row = conn.execute(
            sa.select(t.domains.c.id).where(t.domains.c.name == name.lower())
        ).first()
        if row is None:
            raise NotFound(f"domain {name.lower()} does not exist")
        return row.id

    def _admins(self, conn: sa.Connection, where: Any = None) -> list[Admin]:
        query = (
            sa.select(t.admins.c.id, t.admins.c.system, t.users.c.name,
                      t.domains.c.name.label("domain"))
            .join(t.users, t.admins.c.user_id == t.users.c.id)
            .join(t.domains, t.users.c.domain_id == t.domains.c.id)
        )  # fmt: skip
        if where is not None:
            query = query.where(where)
        rows = conn.execute(query).all()
        ids = [row.id for row in rows]
        owned: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for admin_id, domain in conn.execute(
                sa.select(t.admin_domains.c.admin_id, t.domains.c.name)
                .join(t.domains, t.admin_domains.c.domain_id == t.domains.c.id)
                .where(t.admin_domains.c.admin_id.in_(ids))
            ):
                owned[admin_id].append(domain)
        found = [
            Admin(f"{row.name}@{row.domain}", bool(row.system), tuple(sorted(owned[row.id])))
            for row in rows
        ]
        return sorted(found, key=lambda a: a.address)

    def list_admins(self) -> list[Admin]:
        """Every administrator, sorted by address."""
        with self._tx() as conn:
            return self._admins(conn)

    def get_admin(self, address: str) -> Admin | None:
        """The administrator ``address`` (user@domain), or None."""
        with self._tx() as conn:
            try:
                user_id, _ = self._user_id(conn, address)
            except NotFound:
                return None
            found = self._admins(conn, t.admins.c.user_id == user_id)
            return found[0] if found else None

    def grant(self, address: str, *, system: bool = False, domains: tuple[str, ...] = ()) -> Admin:
        """Make ``address`` a system administrator, or give it ``domains`` to administer."""
        if not system and not domains:
            raise DirectoryError("grant either system rights or at least one domain")
        with self._tx(write=True) as conn:
            user_id, _ = self._user_id(conn, address)
            domain_ids = [self._domain_id(conn, name) for name in domains]
            row = conn.execute(
                sa.select(t.admins.c.id, t.admins.c.system).where(t.admins.c.user_id == user_id)
            ).first()
            if row is None:
                admin_id = conn.execute(
                    t.admins.insert().values(user_id=user_id, system=system, created=self.clock())
                ).inserted_primary_key[0]
            else:
                admin_id = row.id
                if system and not row.system:
                    conn.execute(
                        t.admins.update().where(t.admins.c.id == admin_id).values(system=True)
                    )
            have = set(
                conn.scalars(
                    sa.select(t.admin_domains.c.domain_id).where(
                        t.admin_domains.c.admin_id == admin_id
                    )
                )
            )
            for domain_id in dict.fromkeys(domain_ids):
                if domain_id not in have:
                    conn.execute(
                        t.admin_domains.insert().values(admin_id=admin_id, domain_id=domain_id)
                    )
            return self._admins(conn, t.admins.c.id == admin_id)[0]

    def revoke(
        self, address: str, *, system: bool = False, domains: tuple[str, ...] = ()
    ) -> Admin | None:
        """Take rights from ``address``: system rights, some domains, or (neither given) all of
        them with its tokens. Returns what is left, None when it is no administrator any more."""
        with self._tx(write=True) as conn:
            user_id, canonical = self._user_id(conn, address)
            row = conn.execute(
                sa.select(t.admins.c.id).where(t.admins.c.user_id == user_id)
            ).first()
            if row is None:
                raise NotFound(f"{canonical} is not an administrator")
            admin_id = row.id
            if system:
                conn.execute(
                    t.admins.update().where(t.admins.c.id == admin_id).values(system=False)
                )
            for name in domains:
                domain_id = self._domain_id(conn, name)
                gone = conn.execute(
                    t.admin_domains.delete().where(
                        t.admin_domains.c.admin_id == admin_id,
                        t.admin_domains.c.domain_id == domain_id,
                    )
                ).rowcount
                if not gone:
                    raise NotFound(f"{canonical} does not administer domain {name.lower()}")
            left = self._admins(conn, t.admins.c.id == admin_id)[0]
            if (system or domains) and (left.system or left.domains):
                return left
            conn.execute(t.admins.delete().where(t.admins.c.id == admin_id))
            return None

    # --- tokens ----------------------------------------------------------------------------------
    def create_token(
        self, address: str, name: str, expires: float | None = None
    ) -> tuple[ApiToken, str]:
        """A new token for the administrator ``address``: (its record, the token text)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise DirectoryError("give the token a name of 1 to 100 characters")
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock()
        with self._tx(write=True) as conn:
            user_id, canonical = self._user_id(conn, address)
            admin_id = conn.scalar(sa.select(t.admins.c.id).where(t.admins.c.user_id == user_id))
            if admin_id is None:
                raise NotFound(
                    f"{canonical} is not an administrator; grant rights first "
                    "(`mailmax admin grant`)"
                )
            conn.execute(
                t.api_tokens.insert().values(
                    id=token_id, admin_id=admin_id, name=name, secret_hash=token_hash(token),
                    created=now, expires=expires, last_used=None,
                )
            )  # fmt: skip
        return ApiToken(token_id, canonical, name, now, expires), token

    def list_tokens(self, address: str = "") -> list[ApiToken]:
        """The tokens (of ``address`` only, when given), newest first."""
        query = (
            sa.select(t.api_tokens, t.users.c.name.label("user"), t.domains.c.name.label("domain"))
            .join(t.admins, t.api_tokens.c.admin_id == t.admins.c.id)
            .join(t.users, t.admins.c.user_id == t.users.c.id)
            .join(t.domains, t.users.c.domain_id == t.domains.c.id)
            .order_by(t.api_tokens.c.created.desc())
        )
        with self._tx() as conn:
            if address:
                user_id, _ = self._user_id(conn, address)
                query = query.where(t.admins.c.user_id == user_id)
            return [
                ApiToken(row.id, f"{row.user}@{row.domain}", row.name, row.created, row.expires,
                         row.last_used)
                for row in conn.execute(query)
            ]  # fmt: skip

    def revoke_token(self, token_id: str) -> None:
        """Delete the token ``token_id`` (the part after ``mmx_`` and before the next ``_``)."""
        with self._tx(write=True) as conn:
            gone = conn.execute(t.api_tokens.delete().where(t.api_tokens.c.id == token_id)).rowcount
        if not gone:
            raise NotFound(f"no API token {token_id!r}; see them with `mailmax admin token list`")

    def verify_token(self, token: str) -> Admin | None:
        """The administrator ``token`` belongs to, if it is valid and not expired."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        token_id, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
        if not token_id or not secret or len(token_id) > 32:
            return None
        now = self.clock()
        with self._tx() as conn:
            row = conn.execute(
                sa.select(t.api_tokens, t.admins.c.user_id)
                .join(t.admins, t.api_tokens.c.admin_id == t.admins.c.id)
                .where(t.api_tokens.c.id == token_id)
            ).first()
            if row is None or not hmac.compare_digest(row.secret_hash, token_hash(token)):
                return None
            if row.expires is not None and row.expires <= now:
                return None
            found = self._admins(conn, t.admins.c.user_id == row.user_id)
        if row.last_used is None or now - row.last_used > 60:  # one write a minute at most
            with self._tx(write=True) as conn:
                conn.execute(
                    t.api_tokens.update().where(t.api_tokens.c.id == token_id).values(last_used=now)
                )
        return found[0] if found else None

    # --- sessions --------------------------------------------------------------------------------
    def create_session(self, address: str, lifetime: float, limit: int) -> tuple[str, float]:
        """A new session token for the administrator ``address``, valid ``lifetime`` seconds
        after its last use: (the token, when it expires unless used). Expired sessions are
        dropped, and the oldest beyond ``limit`` sessions."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + lifetime
        sessions = t.admin_sessions
        mark = passwordmarks.session_mark(self.directory, address.strip().lower(), token)
        with self._tx(write=True) as conn:
            user_id, canonical = self._user_id(conn, address)
            admin_id = conn.scalar(sa.select(t.admins.c.id).where(t.admins.c.user_id == user_id))
            if admin_id is None:
                raise NotFound(f"{canonical} is not an administrator")
            conn.execute(sessions.delete().where(sessions.c.expires <= now))
            conn.execute(
                sessions.insert().values(
                    id=token_hash(token), admin_id=admin_id, created=now, expires=expires,
                    password_mark=mark, mark_checked=now,
                )
            )  # fmt: skip
            oldest = (
                sa.select(sessions.c.id)
                .order_by(sessions.c.expires.desc(), sessions.c.created.desc())
                .offset(limit)
            )
            doomed = list(conn.scalars(oldest))
            if doomed:
                conn.execute(sessions.delete().where(sessions.c.id.in_(doomed)))
        return token, expires

    def session_admin(
        self, token: str, lifetime: float, check_seconds: float = 60.0
    ) -> Admin | None:
        """The administrator of a live session token (its expiry moves on to ``lifetime``
        seconds from now), or None. A session of an LDAP-backed administrator compares its
        password fingerprint with LDAP when ``check_seconds`` have passed since the last
        comparison, and ends when the password changed."""
        if not token.startswith(SESSION_PREFIX):
            return None
        key, now, sessions = token_hash(token), self.clock(), t.admin_sessions
        with self._tx() as conn:
            row = conn.execute(
                sa.select(sessions.c.admin_id, sessions.c.expires, sessions.c.password_mark,
                          sessions.c.mark_checked).where(sessions.c.id == key)
            ).first()  # fmt: skip
            if row is None or row.expires <= now:
                return None
            found = self._admins(conn, t.admins.c.id == row.admin_id)
        changes: dict[str, float] = {}
        if found and row.password_mark and now - (row.mark_checked or 0.0) >= check_seconds:
            if not passwordmarks.still_matches(
                self.directory, found[0].address, token, row.password_mark
            ):
                self.end_session(token)
                return None
            changes["mark_checked"] = now
        if now + lifetime - row.expires > SESSION_TOUCH_SECONDS:
            changes["expires"] = now + lifetime
        if changes:
            with self._tx(write=True) as conn:
                conn.execute(sessions.update().where(sessions.c.id == key).values(**changes))
        return found[0] if found else None

    def end_session(self, token: str) -> bool:
        """End a session token; False when it was not live."""
        sessions = t.admin_sessions
        with self._tx(write=True) as conn:
            gone = conn.execute(
                sessions.delete().where(
                    sessions.c.id == token_hash(token), sessions.c.expires > self.clock()
                )
            ).rowcount
            return bool(gone)

    # --- audit log -------------------------------------------------------------------------------
    def audit(
        self, actor: str, origin: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        """Record a change."""
        with self._tx(write=True) as conn:
            conn.execute(
                t.audit_log.insert().values(
                    at=self.clock(), actor=actor, origin=origin[:100], action=action,
                    target=target[:400], detail=detail,
                )
            )  # fmt: skip

    def prune_audit(self, before: float) -> int:
        """Drop the audit entries recorded before ``before`` (Unix time); how many went."""
        with self._tx(write=True) as conn:
            return conn.execute(t.audit_log.delete().where(t.audit_log.c.at < before)).rowcount

    def audit_entries(
        self, *, since: float = 0.0, actor: str = "", limit: int = 100
    ) -> list[AuditEntry]:
        """Recorded changes, newest first (at most ``limit``, up to 1000)."""
        query = sa.select(t.audit_log).where(t.audit_log.c.at >= since)
        if actor:
            query = query.where(t.audit_log.c.actor == actor)
        query = query.order_by(t.audit_log.c.id.desc()).limit(min(limit, MAX_AUDIT_ENTRIES))
        with self._tx() as conn:
            return [
                AuditEntry(row.id, row.at, row.actor, row.origin, row.action, row.target,
                           dict(row.detail or {}))
                for row in conn.execute(query)
            ]  # fmt: skip
