"""Directory: the SQL directory whose domains may take their users from LDAP.

A domain's ``user_source`` says where its users live: empty for the SQL directory, or
``ldap:NAME`` for the ``[ldap.NAME]`` source of the configuration. Domains, aliases, plugin
overrides (forwarding included), rules and login records stay in SQL for every domain. An LDAP
user gets a record in SQL, keyed by its address, the first time MailMax sees it, so what LDAP
does not hold can be attached to it; that record never holds a password and is
stored as disabled, so it never lets anyone log in through SQL.

Every call blocks (LDAP and SQL alike): the server calls it through
:class:`~mailmax.core.directory.cached.AsyncDirectory`, in its thread pool, cached briefly.
An LDAP source that does not answer raises
:class:`~mailmax.core.directory.errors.DirectoryUnavailable`: a temporary failure, never "no
such user".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from mailmax.core.directory import queries as q
from mailmax.core.directory.aliasing import MAILBOX_DOMAIN_TYPES
from mailmax.core.directory.api import AccountType, Domain, Lookup, RecipientLookup, User
from mailmax.core.directory.cached import TTLCache
from mailmax.core.directory.errors import AlreadyExists, DirectoryError, DirectoryUnavailable
from mailmax.core.directory.fields import user_defaults
from mailmax.core.directory.ldapsource import LDAPEntry, LDAPUserSource
from mailmax.core.directory.loginnames import parse_login
from mailmax.core.directory.schema import domain_aliases, domains, users
from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.ldapsettings import LDAPSourceSettings

#: How long the list of LDAP domains is reused: a domain switched to LDAP (or back) takes
#: effect within this time, like the other cached directory answers.
LDAP_DOMAINS_SECONDS = 1.0


class ClearPasswordNotKept(DirectoryError):
    """APOP or CRAM-MD5 was tried for a user whose password MailMax cannot read."""


def build_ldap_sources(settings: Mapping[str, LDAPSourceSettings]) -> dict[str, LDAPUserSource]:
    """An :class:`LDAPUserSource` per ``[ldap.NAME]`` table (no connection is made yet)."""
    return {name: LDAPUserSource(name, source) for name, source in settings.items()}


class Directory(SQLDirectory):
    """The SQL directory with per-domain LDAP user sources (see the module)."""

    #: The configured LDAP sources by name; set after opening.
    ldap_sources: Mapping[str, LDAPUserSource] = {}

    _shadows_lock = threading.Lock()
    _ldap_names: TTLCache[None, frozenset[str]] | None = None

    # ------------------------------------------------------------------ sources
    def ldap_source_of(self, domain: Domain) -> LDAPUserSource | None:
        """The LDAP source of a domain's users, or None when they are in SQL."""
        if not domain.user_source:
            return None
        name = domain.user_source.removeprefix("ldap:")
        source = self.ldap_sources.get(name)
        if source is None:
            raise DirectoryUnavailable(
                f"domain {domain.name} takes its users from the LDAP source {name!r}, which is"
                f" not configured: add [ldap.{name}] to the config file and restart"
            )
        return source

    def close(self) -> None:
        """Close the LDAP connections and the database."""
        for source in self.ldap_sources.values():
            source.close()
        super().close()

    def _ldap_domain_names(self, _: object = None) -> frozenset[str]:
        """Names and aliases of the domains whose users are not in SQL (one query)."""
        query = (
            sa.select(domains.c.name, domain_aliases.c.name.label("alias"))
            .outerjoin(domain_aliases, domain_aliases.c.domain_id == domains.c.id)
            .where(domains.c.user_source != "")
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return frozenset(name for row in rows for name in (row.name, row.alias) if name)

    def _domain_and_source(self, domain_name: str) -> tuple[Domain, LDAPUserSource] | None:
        if self._ldap_names is None:
            self._ldap_names = TTLCache(self._ldap_domain_names, LDAP_DOMAINS_SECONDS)
        if q.canonical_domain(domain_name) not in self._ldap_names.get(None):
            return None
        domain = self.get_domain(domain_name)
        if domain is None or domain.type not in MAILBOX_DOMAIN_TYPES:
            return None
        source = self.ldap_source_of(domain)
        return (domain, source) if source is not None else None

    # ------------------------------------------------------------------ users from LDAP
    def ldap_user(self, domain: Domain, entry: LDAPEntry) -> User | None:
        """The User an entry stands for in ``domain``, or None when it has no address there."""
        mailbox = entry.mailbox_in((domain.name,))
        if not mailbox:
            return None
        source = self.ldap_source_of(domain)
        forward_attribute = source.settings.attributes.forward_to if source else ""
        return User(
            name=mailbox.rpartition("@")[0],
            domain=domain.name,
            first_name=entry.first_name,
            last_name=entry.last_name,
            account_type=AccountType.NORMAL if entry.enabled else AccountType.DISABLED,
            disk_limit_mb=entry.quota_mb,
            home_node=entry.home_node,
            has_password=True,
            clear_password_kept=False,
            forward_to=entry.forward_to,
            forward_to_source=(
                f"LDAP source {source.name}, attribute {forward_attribute}"
                if source and forward_attribute
                else ""
            ),
        )

    def _entry_for_address(
        self, domain: Domain, source: LDAPUserSource, address: str
    ) -> tuple[LDAPEntry, User] | None:
        found = source.find_by_address(address)
        if len(found) != 1:  # none, or ambiguous: never deliver to a guess
            return None
        user = self.ldap_user(domain, found[0])
        if user is None:
            return None
        self._keep_record(domain, user)
        return found[0], user

    def _keep_record(self, domain: Domain, user: User) -> None:
        """Make sure the LDAP user has its SQL record (overrides, login records hang on it)."""
        with self._tx() as conn:
            drow = q.find_domain(conn, domain.name)
            if drow is None or q.user_row(conn, drow["id"], user.name) is not None:
                return
        now = time.time()
        values = user_defaults() | {"account_type": AccountType.DISABLED.value}
        with self._shadows_lock, contextlib.suppress(AlreadyExists), self._tx(write=True) as conn:
            # AlreadyExists: another node made the record at the same moment
            if q.user_row(conn, drow["id"], user.name) is not None:
                return
            conn.execute(
                sa.insert(users).values(
                    domain_id=drow["id"],
                    name=user.name,
                    password_hash=None,
                    password_clear=None,
                    keep_clear=False,
                    created=now,
                    updated=now,
                    **values,
                )
            )

    def find_ldap_user(self, address: str) -> tuple[Domain, LDAPEntry, User] | None:
        """The LDAP entry and user of ``address`` in an LDAP domain, or None."""
        _, _, domain_name = address.rpartition("@")
        pair = self._domain_and_source(domain_name)
        if pair is None:
            return None
        domain, source = pair
        found = self._entry_for_address(domain, source, _canonical(address, domain))
        return (domain, *found) if found else None

    def password_marker(self, address: str) -> str | None:
        """What changes when the password of ``address`` changes in LDAP (see
        :meth:`LDAPUserSource.password_marker`); None for a user whose password is in SQL
        (MailMax sees those changes itself)."""
        _, _, domain_name = address.rpartition("@")
        pair = self._domain_and_source(domain_name)
        if pair is None:
            return None
        domain, source = pair
        found = source.find_by_address(_canonical(address, domain))
        if len(found) != 1:
            return "gone:" + address.lower()
        return source.password_marker(found[0])

    # ------------------------------------------------------------------ the directory's calls
    def lookup_recipient(self, address: str) -> RecipientLookup:
        """See :meth:`SQLDirectory.lookup_recipient`; in an LDAP domain, users come from LDAP
        (aliases and the catch-all setting stay in SQL)."""
        local, at, domain_name = (
            address.rpartition("@") if isinstance(address, str) else ("", "", "")
        )
        pair = self._domain_and_source(domain_name) if at and local else None
        if pair is None:
            return super().lookup_recipient(address)
        domain, source = pair
        full = f"{local.lower()}@{domain.name}"
        found = self._entry_for_address(domain, source, full)
        if found is not None:
            user = found[1]
            status = Lookup.USER if user.enabled else Lookup.DISABLED
            return RecipientLookup(status, full, domain, user)
        with self._tx() as conn:
            drow = q.find_domain(conn, domain.name)
            arow = q.alias_row(conn, drow["id"], local.lower()) if drow is not None else None
            if arow is not None:
                targets = tuple(q.targets_of(conn, [arow["id"]])[arow["id"]])
                return RecipientLookup(Lookup.ALIAS, full, domain, targets=targets)
        if domain.catch_all:
            catcher = self._entry_for_address(domain, source, f"{domain.catch_all}@{domain.name}")
            if catcher is not None and catcher[1].enabled:
                return RecipientLookup(Lookup.CATCH_ALL, full, domain, catcher[1])
        return RecipientLookup(Lookup.UNKNOWN_USER, full, domain)

    def get_user(self, address: str) -> User | None:
        """See :meth:`SQLDirectory.get_user`; LDAP users come from LDAP."""
        _, _, domain_name = address.rpartition("@")
        if self._domain_and_source(domain_name) is None:
            return super().get_user(address)
        found = self.find_ldap_user(address)
        return found[2] if found else None

    def _login_entry(self, login: str, default_domain: str) -> tuple[Any, ...] | None:
        """``(domain, source, entry or None)`` for a login into an LDAP domain, else None."""
        try:
            name, domain_name = parse_login(login, default_domain, self.is_local_domain)
        except DirectoryError:
            return None
        pair = self._domain_and_source(domain_name)
        if pair is None:
            return None
        domain, source = pair
        found = source.find_by_address(f"{name}@{domain.name}")
        if not found:
            found = source.find_by_login(name, domain.name)
        entry = found[0] if len(found) == 1 else None
        return domain, source, entry

    def authenticate(self, login: str, password: str, default_domain: str = "") -> User | None:
        """See :meth:`SQLDirectory.authenticate`; a user of an LDAP domain is checked by its
        LDAP source (a bind as the user, or a compare), never against SQL."""
        found = self._login_entry(login, default_domain)
        if found is None:
            return super().authenticate(login, password, default_domain)
        domain, source, entry = found
        if entry is None:
            return None
        user = self.ldap_user(domain, entry)
        if user is None or not user.enabled or not source.check_password(entry, password):
            return None
        self._keep_record(domain, user)
        return user

    def clear_password(self, login: str, default_domain: str = "") -> tuple[User, str] | None:
        """See :meth:`SQLDirectory.clear_password`; raises :class:`ClearPasswordNotKept` for
        users of an LDAP domain (LDAP never hands out a clear password)."""
        found = self._login_entry(login, default_domain)
        if found is None:
            return super().clear_password(login, default_domain)
        raise ClearPasswordNotKept(
            "this account's password is kept in LDAP, so APOP and CRAM-MD5 (which need the"
            " password in clear text on the server) cannot check it; log in with the password"
            " itself (USER/PASS, AUTH PLAIN or LOGIN) over TLS"
        )

    def add_user(self, address: str, *args: Any, **kwargs: Any) -> User:
        """See :meth:`SQLDirectory.add_user`; refused in an LDAP domain."""
        self._refuse_in_ldap(address, "add users in LDAP instead")
        return super().add_user(address, *args, **kwargs)

    def set_password(self, address: str, *args: Any, **kwargs: Any) -> None:
        """See :meth:`SQLDirectory.set_password`; refused in an LDAP domain."""
        self._refuse_in_ldap(address, "change the password in LDAP instead")
        super().set_password(address, *args, **kwargs)

    def _refuse_in_ldap(self, address: str, advice: str) -> None:
        domain = self.get_domain(address.rpartition("@")[2])
        if domain is not None and domain.user_source:
            raise DirectoryError(
                f"the users of {domain.name} come from {domain.user_source}; {advice}"
            )


def _canonical(address: str, domain: Domain) -> str:
    return f"{address.rpartition('@')[0].lower()}@{domain.name}"
