"""Log-ins against the directory: login-name forms, passwords, blank-password policy.

Mixed into :class:`mailmax.core.directory.sql.SQLDirectory`. The slow argon2 work runs outside
any database transaction. Unknown users and garbled login names cost one dummy verification, so
the answer's timing does not tell whether a user exists.

A successful log-in is remembered for ``login_cache_seconds`` (:class:`LoginCache`): the next
log-in of that user with the same password and the same stored hash skips argon2. Only an
HMAC of the password is kept, under a key this process draws at random; a changed password
(a new stored hash) no longer matches, and an entry never outlives its time. A wrong password
always costs a full verification, as for an unknown user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import sqlalchemy as sa
from argon2 import PasswordHasher

from mailmax.core.directory import queries as q
from mailmax.core.directory.api import BlankPasswordPolicy, User
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.directory.loginnames import parse_login
from mailmax.core.directory.passwords import (
    burn_verify,
    check_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from mailmax.core.directory.schema import users

if TYPE_CHECKING:
    from collections.abc import Callable

#: Users whose last successful log-in a :class:`LoginCache` remembers at most.
LOGIN_CACHE_ENTRIES = 10_000
_cache_lock = threading.Lock()


class LoginCache:
    """Successful log-ins of the last ``seconds``: per user id, the stored hash the password
    matched and an HMAC of the password under a random per-process key (thread-safe)."""

    def __init__(
        self,
        seconds: float,
        *,
        max_entries: int = LOGIN_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[int, tuple[str, bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, password: str) -> bytes:
        """The HMAC of a password under this cache's key (what is kept instead of it)."""
        return hmac.digest(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def matches(self, user_id: int, stored: str, password: str) -> bool:
        """True when ``password`` matched ``stored`` for this user less than ``seconds`` ago."""
        with self._lock:
            entry = self._entries.get(user_id)
        if entry is None or self.seconds <= 0:
            return False
        cached_hash, digest, expires = entry
        if expires <= self._clock() or not hmac.compare_digest(cached_hash, stored):
            self.forget(user_id)
            return False
        return hmac.compare_digest(digest, self.digest(password))

    def remember(self, user_id: int, stored: str, password: str) -> None:
        """Note that ``password`` matched ``stored`` for this user just now."""
        if self.seconds <= 0:
            return
        entry = (stored, self.digest(password), self._clock() + self.seconds)
        with self._lock:
            self._entries[user_id] = entry
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, user_id: int) -> None:
        """Drop what is remembered of this user."""
        with self._lock:
            self._entries.pop(user_id, None)


class AuthMixin:
    """``authenticate`` and ``clear_password`` for the SQL directory."""

    blank_password_default: BlankPasswordPolicy
    hasher: PasswordHasher
    _tx: Callable[..., contextlib.AbstractContextManager[sa.Connection]]
    is_local_domain: Callable[[str], bool]
    #: How long a successful log-in is remembered (0: never); set before the first log-in.
    login_cache_seconds: float = 300.0
    _login_cache: LoginCache | None = None

    @property
    def login_cache(self) -> LoginCache:
        """The cache of successful log-ins of this directory."""
        if self._login_cache is None:
            with _cache_lock:
                if self._login_cache is None:
                    self._login_cache = LoginCache(self.login_cache_seconds)
        return self._login_cache

    def _login_rows(self, login: str, default_domain: str) -> tuple[q.Row, q.Row] | None:
        try:
            name, domain = parse_login(login, default_domain, self.is_local_domain)
        except DirectoryError:
            return None
        with self._tx() as conn:
            return q.find_user(conn, f"{name}@{domain}")

    def blank_policy(self, domain_policy: BlankPasswordPolicy | str) -> BlankPasswordPolicy:
        """The policy in force for a domain's blank passwords (SYSTEM -> the system default)."""
        policy = BlankPasswordPolicy(domain_policy)
        return self.blank_password_default if policy is BlankPasswordPolicy.SYSTEM else policy

    def authenticate(self, login: str, password: str, default_domain: str = "") -> User | None:
        """The user a login name and password identify, or None.

        Login forms: ``user`` (in ``default_domain``), ``user@domain``, ``user%domain``,
        ``user/domain``, ``domain/user``; a domain alias may stand for its domain. Disabled
        users never log in. A user without a password follows the blank-password policy of its
        domain (``system`` -> the default given to ``open``): ``fill`` stores the password
        given now and succeeds, ``none`` succeeds with any password, ``disable`` fails. A hash
        made with weaker parameters is redone after a successful log-in. This method does not
        check ``smtp_auth_disabled``: SMTP AUTH does.
        """
        found = self._login_rows(login, default_domain)
        if found is None:
            burn_verify(password, self.hasher)
            return None
        urow, drow = found
        user = q.make_user(urow, drow)
        stored = urow["password_hash"]
        if not user.enabled:
            burn_verify(password, self.hasher)
            return None
        if stored is None:
            return self._blank_login(user, urow, drow, password)
        cache = self.login_cache
        if cache.matches(urow["id"], stored, password):
            return user
        if not verify_password(stored, password, self.hasher):
            return None
        if needs_rehash(stored, self.hasher):
            rehashed = hash_password(password, self.hasher)
            if self._store_hash(urow["id"], rehashed, password, expected=stored):
                stored = rehashed
        cache.remember(urow["id"], stored, password)
        return user

    def _blank_login(self, user: User, urow: q.Row, drow: q.Row, password: str) -> User | None:
        policy = self.blank_policy(drow["blank_password"])
        if policy is BlankPasswordPolicy.NONE:
            return user
        if policy is BlankPasswordPolicy.DISABLE:
            burn_verify(password, self.hasher)
            return None
        try:
            check_password(password)
        except DirectoryError:
            return None
        if self._store_hash(
            urow["id"], hash_password(password, self.hasher), password, expected=None
        ):
            return dataclasses.replace(user, has_password=True)
        # another log-in filled the password first: the new one must match it
        with self._tx() as conn:
            fresh = conn.execute(sa.select(users.c.password_hash).where(users.c.id == urow["id"]))
            stored = fresh.scalar_one_or_none()
        return user if stored and verify_password(stored, password, self.hasher) else None

    def _store_hash(
        self, user_id: int, hashed: str, password: str, *, expected: str | None
    ) -> bool:
        """Replace the hash if it is still ``expected``; True when it was replaced."""
        where = (
            users.c.password_hash.is_(None)
            if expected is None
            else (users.c.password_hash == expected)
        )
        with self._tx(write=True, lock=False) as conn:
            keep = conn.execute(sa.select(users.c.keep_clear).where(users.c.id == user_id)).scalar()
            result = conn.execute(
                sa.update(users)
                .where(users.c.id == user_id, where)
                .values(
                    password_hash=hashed,
                    password_clear=password if keep else None,
                    updated=time.time(),
                )
            )
            return result.rowcount == 1

    def clear_password(self, login: str, default_domain: str = "") -> tuple[User, str] | None:
        """The user and clear password for APOP / CRAM-MD5, or None.

        None unless the user is enabled, has a password and its clear copy is kept.
        """
        found = self._login_rows(login, default_domain)
        if found is None:
            return None
        urow, drow = found
        user = q.make_user(urow, drow)
        if not user.enabled or urow["password_clear"] is None or urow["password_hash"] is None:
            return None
        return user, urow["password_clear"]
