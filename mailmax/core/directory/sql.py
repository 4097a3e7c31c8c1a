"""SQLDirectory: the blocking directory on SQLite or PostgreSQL.

Every public method opens a short transaction of its own; writes are serialised (see
:mod:`mailmax.core.directory.engine`). Names are case-insensitive: domains are kept in their
canonical IDNA form, user and alias names in lower case. A domain alias may stand for its domain
anywhere an address or a domain name is taken.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher

from mailmax.core.directory import maildirs, migrations
from mailmax.core.directory import queries as q
from mailmax.core.directory.admins import end_sessions_of_user
from mailmax.core.directory.aliasing import MAILBOX_DOMAIN_TYPES, AliasMixin
from mailmax.core.directory.api import (
    AccountType,
    BlankPasswordPolicy,
    DeleteMode,
    Domain,
    DomainType,
    Lookup,
    RecipientLookup,
    User,
)
from mailmax.core.directory.auth import AuthMixin
from mailmax.core.directory.engine import make_engine, transaction
from mailmax.core.directory.errors import AlreadyExists, DirectoryError, FieldError, NotFound
from mailmax.core.directory.fields import (
    DOMAIN_FIELDS,
    check_domain,
    domain_defaults,
    domain_from_row,
    domain_values,
    user_defaults,
    user_values,
)
from mailmax.core.directory.loginnames import (
    check_domain_name,
    check_mail_domain,
    check_user_name,
    valid_user_name,
)
from mailmax.core.directory.overrides import OverridesMixin
from mailmax.core.directory.passwords import DEFAULT_HASHER, hash_password
from mailmax.core.directory.schema import (
    domain_aliases,
    domains,
    users,
)


class SQLDirectory(AuthMixin, AliasMixin, OverridesMixin):
    """The directory in a SQL database, through SQLAlchemy Core; every call blocks.

    Open it with :meth:`open`. Relative domain mail directories are taken relative to
    ``base_dir`` (the data directory; default: the working directory when opened).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        blank_password_default: BlankPasswordPolicy = BlankPasswordPolicy.DISABLE,
        base_dir: str | Path | None = None,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        policy = BlankPasswordPolicy(blank_password_default)
        if policy is BlankPasswordPolicy.SYSTEM:
            raise DirectoryError(
                "the system blank-password policy must be fill, none or disable (not system)"
            )
        self._engine = engine
        self.blank_password_default = policy
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.hasher = password_hasher or DEFAULT_HASHER

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        blank_password_default: BlankPasswordPolicy = BlankPasswordPolicy.DISABLE,
        base_dir: str | Path | None = None,
        password_hasher: PasswordHasher | None = None,
    ) -> SQLDirectory:
        """Open the directory at a SQLAlchemy ``url``; upgrade its schema unless told not to.

        ``blank_password_default`` is the system's blank-password policy, used by domains
        whose policy is ``system``. ``password_hasher`` replaces the default argon2id
        parameters (stored hashes made with other parameters are redone at the next log-in).
        """
        engine = make_engine(url)
        try:
            directory = cls(
                engine,
                blank_password_default=blank_password_default,
                base_dir=base_dir,
                password_hasher=password_hasher,
            )
            if migrate:
                directory.migrate()
        except BaseException:
            engine.dispose()
            raise
        return directory

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (for tools and tests)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def _tx(self, *, write: bool = False, lock: bool = True) -> contextlib.AbstractContextManager:
        return transaction(self._engine, write=write, lock=lock)

    def migrate(self) -> None:
        """Upgrade the database to the newest schema version; does nothing when it is current.

        The upgrade is one transaction that holds the write lock, so processes opening a new
        database at the same moment migrate it once. A database at a version this code does not
        know (made by a newer MailMax) is refused.
        """
        if self._version_checked() == migrations.head():
            return
        with self._tx(write=True) as conn:
            if self._version_checked(conn) != migrations.head():
                migrations.upgrade(conn)

    def _version_checked(self, conn: sa.Connection | None = None) -> str:
        if conn is None:
            with self._tx() as fresh:
                return self._version_checked(fresh)
        version = migrations.current(conn)
        if version and version not in migrations.versions():
            raise DirectoryError(
                f"the directory database is at schema version {version}, newer than this "
                f"MailMax knows (newest {migrations.head()}); upgrade MailMax on this machine"
            )
        return version

    def schema_version(self) -> str:
        """The database's schema version ("" before the first migration)."""
        with self._tx() as conn:
            return migrations.current(conn)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> SQLDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- domains -------------------------------------------------------------------------------

    def add_domain(self, name: str, mail_dir: str, **fields: Any) -> Domain:
        """Add a domain; ``fields`` are :class:`Domain` fields (``aliases`` adds domain aliases).

        ``catch_all`` and ``monitor`` name users of the domain, so they are set with
        :meth:`edit_domain` once those users exist.
        """
        canonical = check_mail_domain(name)
        new_aliases = fields.pop("aliases", ())
        values = domain_defaults() | domain_values({"mail_dir": mail_dir, **fields})
        for key in ("catch_all", "monitor"):
            if values[key]:
                raise FieldError(
                    key,
                    f"{{field}} must name an existing user of {canonical}: add the domain "
                    "and the user first, then set {field}",
                )
        check_domain(values)
        with self._tx(write=True) as conn:
            self._check_domain_name_free(conn, canonical)
            self._check_mail_dir_free(conn, values["mail_dir"], None)
            now = time.time()
            result = conn.execute(
                sa.insert(domains).values(name=canonical, created=now, updated=now, **values)
            )
            domain_id = q.inserted_id(result)
            self._add_domain_aliases(conn, domain_id, canonical, new_aliases)
            return q.make_domain(conn, q.domain_by_id(conn, domain_id))

    def get_domain(self, name: str) -> Domain | None:
        """The domain called ``name`` or aliased by it, or None."""
        canonical = q.canonical_domain(name)
        if canonical is None:
            return None
        with self._tx() as conn:
            row = q.find_domain(conn, canonical)
            return q.make_domain(conn, row) if row is not None else None

    def list_domains(self, name_filter: str = "", type: DomainType | None = None) -> list[Domain]:
        """Domains whose name contains ``name_filter`` (and of ``type``), sorted by name."""
        query = sa.select(domains).order_by(domains.c.name)
        if name_filter:
            query = query.where(domains.c.name.contains(name_filter.lower(), autoescape=True))
        if type is not None:
            query = query.where(domains.c.type == DomainType(type).value)
        with self._tx() as conn:
            rows = conn.execute(query).mappings().all()
            names = q.domain_aliases_of(conn, [row["id"] for row in rows])
            return [domain_from_row(row, names[row["id"]]) for row in rows]

    def edit_domain(self, name: str, **fields: Any) -> Domain:
        """Change a domain's fields and return the result.

        ``aliases`` replaces the domain's aliases. Changing ``mail_dir`` does not move mail:
        move the folder first. ``catch_all`` and ``monitor`` must name users of the domain
        (or be empty to clear them).
        """
        new_aliases = fields.pop("aliases", None)
        with self._tx(write=True) as conn:
            row = q.require_domain(conn, name)
            for key in ("catch_all", "monitor"):
                value = fields.get(key)
                if isinstance(value, str) and "@" in value:
                    fields[key] = self._own_local_part(conn, row, key, value)
            changes = domain_values(fields)
            check_domain({key: row[key] for key in DOMAIN_FIELDS} | changes)
            for key in ("catch_all", "monitor"):
                if changes.get(key) and q.user_row(conn, row["id"], changes[key]) is None:
                    raise FieldError(
                        key,
                        f"{{field}} {changes[key]!r} is not a user of {row['name']}; "
                        "add the user first or pick an existing one",
                    )
            if "mail_dir" in changes and changes["mail_dir"] != row["mail_dir"]:
                self._check_mail_dir_free(conn, changes["mail_dir"], row["id"])
            if changes:
                conn.execute(
                    sa.update(domains)
                    .where(domains.c.id == row["id"])
                    .values(updated=time.time(), **changes)
                )
            if new_aliases is not None:
                conn.execute(
                    sa.delete(domain_aliases).where(domain_aliases.c.domain_id == row["id"])
                )
                self._add_domain_aliases(conn, row["id"], row["name"], new_aliases)
            return q.make_domain(conn, q.domain_by_id(conn, row["id"]))

    @staticmethod
    def _own_local_part(conn: sa.Connection, row: q.Row, key: str, address: str) -> str:
        """The user name of ``address``, which must be in the domain of ``row`` (or an alias)."""
        local, _, domain = address.strip().rpartition("@")
        canonical = q.canonical_domain(domain)
        found = q.find_domain(conn, canonical) if canonical and local else None
        if found is None or found["id"] != row["id"]:
            raise FieldError(
                key,
                f"{{field}} {address!r} is not an address of {row['name']}: the account "
                "must be a user of the domain itself",
            )
        return local

    def delete_domain(self, name: str, mode: DeleteMode = DeleteMode.DATABASE) -> None:
        """Delete a domain with its aliases, users and their records.

        ``mode``: ``database`` leaves the mail directory alone; ``archive`` renames it to
        ``<mail_dir>.deleted-YYYYMMDD-HHMMSS`` (UTC); ``remove`` deletes it with all mail.
        The records stay when the mail directory cannot be renamed.
        """
        mode = DeleteMode(mode)
        canonical = check_domain_name(name)
        with maildirs.disposal(mode) as dispose, self._tx(write=True) as conn:
            row = q.require_domain(conn, name)
            if row["name"] != canonical:
                raise DirectoryError(
                    f"{canonical} is an alias of {row['name']}; remove the alias "
                    f"(`mailmax domain alias delete {canonical}`) or delete {row['name']} "
                    "by its own name"
                )
            conn.execute(sa.delete(domains).where(domains.c.id == row["id"]))
            dispose(self._path(row["mail_dir"]))

    def add_domain_alias(self, alias: str, domain: str) -> None:
        """Make ``alias`` another name of ``domain``; refused for real domains and aliases."""
        with self._tx(write=True) as conn:
            row = q.require_domain(conn, domain)
            self._add_domain_aliases(conn, row["id"], row["name"], [alias])

    def remove_domain_alias(self, alias: str) -> None:
        """Remove a domain alias."""
        canonical = check_domain_name(alias)
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.delete(domain_aliases).where(domain_aliases.c.name == canonical)
            )
            if result.rowcount == 0:
                raise NotFound(
                    f"{canonical} is not a domain alias; `mailmax domain list` shows them"
                )

    def _check_domain_name_free(self, conn: sa.Connection, name: str) -> None:
        row = q.find_domain(conn, name)
        if row is None:
            return
        if row["name"] == name:
            raise AlreadyExists(f"domain {name} already exists")
        raise AlreadyExists(
            f"{name} is already an alias of {row['name']}; remove the alias first "
            "to make it a domain of its own"
        )

    def _add_domain_aliases(
        self, conn: sa.Connection, domain_id: int, domain: str, names: Any
    ) -> None:
        if isinstance(names, str):
            names = [names]
        for alias in names:
            canonical = check_mail_domain(alias)
            if canonical == domain:
                raise DirectoryError(f"{canonical} cannot be an alias of itself")
            row = q.find_domain(conn, canonical)
            if row is not None and row["name"] == canonical:
                raise AlreadyExists(
                    f"{canonical} is a real domain; an alias may not duplicate a real domain "
                    "(delete the domain first if it should become an alias)"
                )
            if row is not None:
                raise AlreadyExists(f"{canonical} is already an alias of {row['name']}")
            conn.execute(
                sa.insert(domain_aliases).values(
                    name=canonical, domain_id=domain_id, created=time.time()
                )
            )

    def _path(self, mail_dir: str) -> Path:
        path = Path(mail_dir).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _check_mail_dir_free(
        self, conn: sa.Connection, mail_dir: str, domain_id: int | None
    ) -> None:
        mine = maildirs.normal(self._path(mail_dir))
        for other_id, other_name, other_dir in conn.execute(
            sa.select(domains.c.id, domains.c.name, domains.c.mail_dir)
        ):
            theirs = maildirs.normal(self._path(other_dir))
            if other_id != domain_id and maildirs.overlap(mine, theirs):
                raise AlreadyExists(
                    f"mail directory {str(mine)!r} overlaps {str(theirs)!r} of domain "
                    f"{other_name}; give each domain a folder of its own"
                )

    # --- users ---------------------------------------------------------------------------------

    def add_user(
        self, address: str, password: str | None = None, *, keep_clear: bool = False, **fields: Any
    ) -> User:
        """Add a user ``name@domain``. No password (None or "") means a blank password.

        With ``keep_clear`` a clear copy of the password is kept beside its hash (for APOP and
        CRAM-MD5). Refused when the name is taken by a user or an alias, when the domain has no
        mailboxes here (relay, backup, ETRN) or is full (``max_users``).
        """
        local, domain = q.split_address(address)
        name = check_user_name(local)
        values = user_defaults() | user_values(fields)
        values["keep_clear"] = bool(keep_clear)
        values["password_hash"] = hash_password(password, self.hasher) if password else None
        values["password_clear"] = password if password and keep_clear else None
        with self._tx(write=True) as conn:
            drow = q.require_domain(conn, domain)
            full = f"{name}@{drow['name']}"
            if DomainType(drow["type"]) not in MAILBOX_DOMAIN_TYPES:
                raise DirectoryError(
                    f"{drow['name']} is a {drow['type']} domain: its mail is passed on, so it "
                    "has no mailboxes here; make it a normal domain to add users"
                )
            self._check_local_name_free(conn, drow, name)
            if drow["max_users"]:
                count = conn.execute(
                    sa.select(sa.func.count()).where(users.c.domain_id == drow["id"])
                ).scalar_one()
                if count >= drow["max_users"]:
                    raise DirectoryError(
                        f"{drow['name']} already has {count} users, its limit; raise the "
                        "domain's user limit or delete a user before adding " + full
                    )
            now = time.time()
            result = conn.execute(
                sa.insert(users).values(
                    domain_id=drow["id"], name=name, created=now, updated=now, **values
                )
            )
            return q.make_user(q.user_by_id(conn, q.inserted_id(result)), drow)

    def get_user(self, address: str) -> User | None:
        """The user at ``address`` (a domain alias may be used), or None."""
        with self._tx() as conn:
            found = q.find_user(conn, address)
            return q.make_user(*found) if found else None

    def list_users(
        self,
        domain: str | None = None,
        name_filter: str = "",
        account_type: AccountType | None = None,
    ) -> list[User]:
        """Users, optionally of one domain, filtered by name substring and account type.

        Sorted by domain, then name.
        """
        query = (
            sa.select(users, domains.c.name.label("domain_name"))
            .join(domains, users.c.domain_id == domains.c.id)
            .order_by(domains.c.name, users.c.name)
        )
        if name_filter:
            query = query.where(users.c.name.contains(name_filter.lower(), autoescape=True))
        if account_type is not None:
            query = query.where(users.c.account_type == AccountType(account_type).value)
        with self._tx() as conn:
            if domain is not None:
                query = query.where(users.c.domain_id == q.require_domain(conn, domain)["id"])
            rows = conn.execute(query).mappings().all()
        return [q.make_user(row, {"name": row["domain_name"]}) for row in rows]

    def edit_user(self, address: str, **fields: Any) -> User:
        """Change a user's fields (see :class:`User`; not name, domain or password)."""
        changes = user_values(fields)
        with self._tx(write=True) as conn:
            urow, drow = q.require_user(conn, address)
            if changes:
                conn.execute(
                    sa.update(users)
                    .where(users.c.id == urow["id"])
                    .values(updated=time.time(), **changes)
                )
            return q.make_user(q.user_by_id(conn, urow["id"]), drow)

    def set_password(
        self, address: str, password: str | None, *, keep_clear: bool | None = None
    ) -> None:
        """Set a user's password; None or "" blanks it.

        ``keep_clear`` True keeps a clear copy (APOP, CRAM-MD5), False drops it, None leaves the
        user's choice as it is.
        """
        hashed = hash_password(password, self.hasher) if password else None
        with self._tx(write=True) as conn:
            urow, _ = q.require_user(conn, address)
            keep = urow["keep_clear"] if keep_clear is None else bool(keep_clear)
            conn.execute(
                sa.update(users)
                .where(users.c.id == urow["id"])
                .values(
                    password_hash=hashed,
                    password_clear=password if password and keep else None,
                    keep_clear=keep,
                    updated=time.time(),
                )
            )
            end_sessions_of_user(conn, urow["id"])  # a new password ends the admin's sessions

    def delete_user(self, address: str, mode: DeleteMode = DeleteMode.DATABASE) -> None:
        """Delete a user with its forward, overrides and login records.

        ``mode`` as for :meth:`delete_domain`, applied to the user's Maildir. A domain whose
        catch-all or monitor account this was has none afterwards. Aliases pointing at the user
        are left as they are.
        """
        mode = DeleteMode(mode)
        with maildirs.disposal(mode) as dispose, self._tx(write=True) as conn:
            urow, drow = q.require_user(conn, address)
            conn.execute(sa.delete(users).where(users.c.id == urow["id"]))
            for key in ("catch_all", "monitor"):
                if drow[key] == urow["name"]:
                    conn.execute(
                        sa.update(domains).where(domains.c.id == drow["id"]).values({key: ""})
                    )
            dispose(self._path(drow["mail_dir"]) / urow["name"])

    def user_maildir(self, user: User) -> Path:
        """The user's Maildir++ root, ``<domain mail_dir>/<user name>`` (made on first delivery)."""
        domain = self.get_domain(user.domain)
        if domain is None:
            raise NotFound(f"domain {user.domain} of {user.address} does not exist any more")
        return self.domain_mail_path(domain) / user.name

    def domain_mail_path(self, domain: Domain) -> Path:
        """Where a domain's mailboxes are (its mail directory, relative ones under the
        directory's base)."""
        return self._path(domain.mail_dir)

    def _check_local_name_free(self, conn: sa.Connection, drow: q.Row, name: str) -> None:
        full = f"{name}@{drow['name']}"
        if q.user_row(conn, drow["id"], name) is not None:
            raise AlreadyExists(f"user {full} already exists")
        if q.alias_row(conn, drow["id"], name) is not None:
            raise AlreadyExists(
                f"{full} is already an alias; delete the alias or pick another name"
            )

    # --- mail routing --------------------------------------------------------------------------

    def is_local_domain(self, name: str) -> bool:
        """True when ``name`` is a domain (of any type) or a domain alias configured here."""
        canonical = q.canonical_domain(name)
        if canonical is None:
            return False
        with self._tx() as conn:
            return q.find_domain(conn, canonical) is not None

    def lookup_recipient(self, address: str) -> RecipientLookup:
        """What ``address`` is to this system; never raises for odd input.

        In order: not one of our domains (or a relay, backup or ETRN domain, whose mail is
        passed on: ``domain`` is then set) -> NOT_LOCAL; a user -> USER (DISABLED for disabled
        accounts; spam traps are USER); a user alias -> ALIAS with its targets; the domain's
        catch-all account, when enabled -> CATCH_ALL; else UNKNOWN_USER. Domain and local part
        are case-insensitive and a domain alias resolves to its domain, so ``address`` of the
        answer is canonical for local domains. ``postmaster`` gets no special case: the setup
        wizard creates a postmaster user, and the catch-all covers it otherwise.
        """
        local, at, domain = address.rpartition("@") if isinstance(address, str) else ("", "", "")
        canonical = q.canonical_domain(domain) if at and local else None
        if canonical is None:
            return RecipientLookup(Lookup.NOT_LOCAL, address)
        with self._tx() as conn:
            drow = q.find_domain(conn, canonical)
            if drow is None:
                return RecipientLookup(Lookup.NOT_LOCAL, f"{local}@{canonical}")
            found = q.make_domain(conn, drow)
            if found.type not in MAILBOX_DOMAIN_TYPES:
                return RecipientLookup(Lookup.NOT_LOCAL, f"{local}@{found.name}", found)
            name = local.lower()
            full = f"{name}@{found.name}"
            if valid_user_name(name):
                urow = q.user_row(conn, drow["id"], name)
                if urow is not None:
                    user = q.make_user(urow, drow)
                    status = Lookup.USER if user.enabled else Lookup.DISABLED
                    return RecipientLookup(status, full, found, user)
                arow = q.alias_row(conn, drow["id"], name)
                if arow is not None:
                    targets = tuple(q.targets_of(conn, [arow["id"]])[arow["id"]])
                    return RecipientLookup(Lookup.ALIAS, full, found, targets=targets)
            if found.catch_all:
                crow = q.user_row(conn, drow["id"], found.catch_all)
                if crow is not None:
                    catcher = q.make_user(crow, drow)
                    if catcher.enabled:
                        return RecipientLookup(Lookup.CATCH_ALL, full, found, catcher)
            return RecipientLookup(Lookup.UNKNOWN_USER, full, found)
