"""An LDAP server (ldap3) as a source of users and their passwords; every call blocks.

A :class:`LDAPUserSource` finds a user's entry by address or by login name through a service
account, and checks a password by binding as the user (or, with ``auth = "compare"``, by reading
the hashed password attribute through the service account and checking the password against
it). The servers of a source form an ldap3 ``ServerPool``: each new connection goes to the first
one that answers. Service connections are kept open in a small pool, one thread per connection
at a time; every connection has a connect and a receive timeout.

Filter values are escaped (RFC 4515) before they enter a filter template. An empty password is
refused before any bind: an LDAP bind with a DN and no password is an anonymous bind that some
servers accept (RFC 4513 §5.1.2).

Anything that keeps the server from answering raises
:class:`~mailmax.core.directory.errors.DirectoryUnavailable`, so callers answer with a
temporary failure and never treat an unreachable server as "no such user".
"""

from __future__ import annotations

import contextlib
import math
import queue
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from mailmax.core.directory import ldaphashes
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.ldapsettings import LDAPSourceSettings

#: Entries a search may return: more than one is an ambiguous directory, never a match.
SEARCH_SIZE_LIMIT = 2
#: The operational attribute the ppolicy overlay sets when a password changes.
PASSWORD_CHANGED_ATTRIBUTE = "pwdChangedTime"
_TRUE = {"true", "yes", "1", "enabled", "on"}


@dataclass(frozen=True, slots=True)
class LDAPEntry:
    """What a user's LDAP entry says, through the source's attribute mapping."""

    dn: str
    addresses: tuple[str, ...]  # the address attribute's values, lower case, in order
    aliases: tuple[str, ...] = ()
    login: str = ""
    first_name: str = ""
    last_name: str = ""
    quota_mb: int = 0
    enabled: bool = True
    home_node: str = ""
    forward_to: tuple[str, ...] = ()
    raw: dict[str, list[str]] = field(default_factory=dict)

    def mailbox_in(self, domains: tuple[str, ...]) -> str:
        """The entry's first address in one of ``domains`` (the mailbox), or ``""``."""
        for address in self.addresses:
            if address.rpartition("@")[2] in domains:
                return address
        return ""


class LDAPUserSource:
    """Users of one ``[ldap.NAME]`` source (blocking; safe to call from several threads)."""

    def __init__(self, name: str, settings: LDAPSourceSettings) -> None:
        self.name = name
        self.settings = settings
        tls = self._tls()
        servers = []
        for url in settings.urls:
            scheme, _, rest = url.rstrip("/").partition("://")
            host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
            servers.append(
                ldap3.Server(
                    host,
                    port=int(port) if port else None,
                    use_ssl=scheme == "ldaps",
                    tls=tls,
                    connect_timeout=settings.timeout,
                    get_info=ldap3.NONE,
                )
            )
        # one round over the servers per connection, no pause between rounds (ldap3 waits
        # POOLING_LOOP_TIMEOUT seconds between rounds otherwise)
        ldap3.set_config_parameter("POOLING_LOOP_TIMEOUT", 0)
        self._servers = ldap3.ServerPool(servers, ldap3.FIRST, active=1, exhaust=False)
        self._down_until = 0.0  # time.monotonic() until which no server is tried
        self._idle: queue.LifoQueue[ldap3.Connection] = queue.LifoQueue()
        self._slots = queue.Queue[None](maxsize=settings.pool_size)

    def _tls(self) -> ldap3.Tls | None:
        settings = self.settings
        if not (settings.start_tls or any(u.startswith("ldaps:") for u in settings.urls)):
            return None
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=settings.ca_file or None,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )

    # ------------------------------------------------------------------ connections
    def _connect(self, user: str | None, password: str | None) -> ldap3.Connection:
        """A bound connection (raises LDAPBindError for refused credentials).

        When no server could be reached, none is tried again for ``timeout`` seconds: calls
        fail at once meanwhile, so an LDAP outage does not hold the directory's threads (which
        SQL domains need too) for a timeout per call.
        """
        waiting = self._down_until - time.monotonic()
        if waiting > 0:
            raise DirectoryUnavailable(
                f"LDAP source {self.name} ({', '.join(self.settings.urls)}) did not answer;"
                f" trying again in {waiting:.1f}s"
            )
        connection = ldap3.Connection(
            self._servers,
            user=user,
            password=password,
            receive_timeout=max(1, math.ceil(self.settings.timeout)),  # whole seconds only
            read_only=True,
            raise_exceptions=False,
            auto_referrals=False,
        )
        try:
            connection.open()
            if self.settings.start_tls and not connection.start_tls():
                # never go on in clear text: the bind would send a password
                raise ldap_errors.LDAPStartTLSError(
                    f"StartTLS refused: {connection.result.get('description', 'no answer')}"
                )
            if not connection.bind():
                raise ldap_errors.LDAPBindError(connection.result.get("description", "refused"))
        except ldap_errors.LDAPBindError:
            connection.unbind()
            raise
        except BaseException as exc:
            connection.unbind()
            if isinstance(exc, ldap_errors.LDAPException):
                self._down_until = time.monotonic() + self.settings.timeout
            raise
        return connection

    @contextlib.contextmanager
    def _service(self) -> Iterator[ldap3.Connection]:
        """A service-bound connection from the pool, for one thread at a time."""
        try:
            self._slots.put(None, timeout=self.settings.timeout)
        except queue.Full:
            raise DirectoryUnavailable(
                f"LDAP source {self.name}: all {self.settings.pool_size} connections are busy"
            ) from None
        connection = None
        try:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._connect(self.settings.bind_dn or None, self._bind_password())
            yield connection
            self._idle.put(connection)
            connection = None
        finally:
            if connection is not None:
                connection.unbind()
            self._slots.get_nowait()

    def _bind_password(self) -> str | None:
        return self.settings.bind_password or None

    def close(self) -> None:
        """Close the pooled connections."""
        while True:
            try:
                self._idle.get_nowait().unbind()
            except queue.Empty:
                return

    def _unavailable(self, exc: BaseException) -> DirectoryUnavailable:
        urls = ", ".join(self.settings.urls)
        return DirectoryUnavailable(f"LDAP source {self.name} ({urls}) is not answering: {exc}")

    # ------------------------------------------------------------------ searches
    def _attribute_names(self) -> list[str]:
        mapping = self.settings.attributes
        return sorted({name for name in mapping.model_dump().values() if name})

    def _search(
        self,
        template: str,
        values: dict[str, str],
        *,
        base: str = "",
        attributes: list[str] | None = None,
    ) -> list[LDAPEntry]:
        search_filter = fill_filter(template, values)
        for attempt in (1, 2):  # a pooled connection may have been dropped by the server
            try:
                with self._service() as connection:
                    connection.search(
                        base or self.settings.base_dn,
                        search_filter,
                        ldap3.BASE if base else ldap3.SUBTREE,
                        attributes=attributes or self._attribute_names(),
                        size_limit=SEARCH_SIZE_LIMIT,
                        time_limit=max(1, int(self.settings.timeout)),
                    )
                    self._check_result(connection)
                    return [self._entry(item) for item in connection.response or []
                            if item.get("type") == "searchResEntry"]  # fmt: skip
            except ldap_errors.LDAPCommunicationError as exc:
                if attempt == 2:
                    raise self._unavailable(exc) from None
            except ldap_errors.LDAPException as exc:
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def _check_result(self, connection: ldap3.Connection) -> None:
        result = connection.result or {}
        code = result.get("result", 0)
        # 0 success, 4 size limit exceeded (two entries: ambiguous, handled by the caller),
        # 32 no such object (the base is empty)
        if code not in (0, 4, 32):
            raise DirectoryUnavailable(
                f"LDAP source {self.name}: the search failed: {result.get('description')}"
                f" {result.get('message', '')}".rstrip()
            )

    def _entry(self, item: dict) -> LDAPEntry:
        mapping = self.settings.attributes
        raw = {key: [_text(v) for v in _values(value)] for key, value in item["attributes"].items()}

        def values(name: str) -> list[str]:
            if not name:
                return []
            for key, found in raw.items():
                if key.lower() == name.lower():
                    return found
            return []

        def first(name: str) -> str:
            found = values(name)
            return found[0] if found else ""

        quota = first(mapping.quota_mb)
        switch = first(mapping.enabled)
        return LDAPEntry(
            dn=item["dn"],
            addresses=tuple(v.lower() for v in values(mapping.address)),
            aliases=tuple(v.lower() for v in values(mapping.aliases)),
            login=first(mapping.login),
            first_name=first(mapping.first_name),
            last_name=first(mapping.last_name),
            quota_mb=int(quota) if quota.isdigit() else 0,
            enabled=not switch or switch.strip().lower() in _TRUE,
            home_node=first(mapping.home_node),
            forward_to=tuple(v.strip() for v in values(mapping.forward_to) if v.strip()),
            raw=raw,
        )

    def address_filter_for(self, address: str) -> str:
        """The filter that finds the entry of ``address``."""
        local, _, domain = address.rpartition("@")
        values = {"address": address, "local": local, "domain": domain}
        return fill_filter(self.settings.address_filter, values)

    def find_by_address(self, address: str) -> list[LDAPEntry]:
        """The entries whose address (or alias) is ``address``: none, one, or (ambiguous) two."""
        local, _, domain = address.rpartition("@")
        values = {"address": address, "local": local, "domain": domain}
        found = self._search(self.settings.address_filter, values)
        if not found and self.settings.attributes.aliases:
            mapping = self.settings.attributes
            alias_filter = f"({escape_filter_chars(mapping.aliases)}={{address}})"
            found = self._search(alias_filter, values)
        return found

    def find_by_login(self, login: str, domain: str = "") -> list[LDAPEntry]:
        """The entries whose login name is ``login``: none, one, or (ambiguous) two."""
        return self._search(self.settings.login_filter, {"login": login, "domain": domain})

    # ------------------------------------------------------------------ passwords
    def check_password(self, entry: LDAPEntry, password: str) -> bool:
        """True when ``password`` is the entry's password; an empty one never is."""
        if not password:
            return False
        if self.settings.auth == "compare":
            return self._compare(entry, password)
        try:
            connection = self._connect(entry.dn, password)
        except ldap_errors.LDAPBindError:
            return False
        except ldap_errors.LDAPException as exc:
            raise self._unavailable(exc) from None
        connection.unbind()
        return True

    def _compare(self, entry: LDAPEntry, password: str) -> bool:
        attribute = self.settings.password_attribute
        found = self._search(
            f"({escape_filter_chars(attribute)}=*)", {}, base=entry.dn, attributes=[attribute]
        )
        stored = [v for item in found for key, vs in item.raw.items()
                  if key.lower() == attribute.lower() for v in vs]  # fmt: skip
        if not stored:
            raise DirectoryUnavailable(
                f"LDAP source {self.name}: the service account cannot read {attribute} of"
                f" {entry.dn}; give it read access or use auth = 'bind'"
            )
        return any(ldaphashes.verify(value, password) for value in stored)

    def password_marker(self, entry: LDAPEntry) -> str:
        """What changes when the entry's password changes, read through the service account:
        ``pwdChangedTime`` (kept by the ppolicy overlay) and the password attribute. ``""``
        when the service account may read neither."""
        attributes = [PASSWORD_CHANGED_ATTRIBUTE, self.settings.password_attribute]
        found = self._search("(objectClass=*)", {}, base=entry.dn, attributes=attributes)
        if not found:
            return "gone:" + entry.dn  # the entry went away (or moved): never the old marker
        wanted = {name.lower() for name in attributes}
        values = sorted(
            f"{key.lower()}={value}"
            for key, found_values in found[0].raw.items()
            if key.lower() in wanted
            for value in found_values
        )
        return "\n".join(values)


def fill_filter(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by its value, escaped for a filter."""
    escaped = {key: escape_filter_chars(value) for key, value in values.items()}
    return template.format_map(_Missing(escaped))


class _Missing(dict):
    """Filter template values; an unknown ``{name}`` stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _values(value: object) -> list[object]:
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None else [value]
