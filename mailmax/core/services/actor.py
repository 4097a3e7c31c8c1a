"""Who is doing an administrative change, what they may touch, and the record of it."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailmax.core.directory.errors import DirectoryError

if TYPE_CHECKING:
    from mailmax.core.directory.admins import Admin
    from mailmax.core.directory.sql import SQLDirectory


class Forbidden(DirectoryError):
    """The actor may not do this. The message never says whether the object exists."""


@dataclass(frozen=True)
class Actor:
    """An administrator at work: ``name`` (a user address, or ``cli:<login>`` for the local
    command line), ``system`` rights or the ``domains`` they administer, and ``origin``
    (where the request came from: ``cli``, or the client's IP address)."""

    name: str
    system: bool
    domains: frozenset[str] = field(default_factory=frozenset)
    origin: str = "cli"

    @classmethod
    def local(cls) -> Actor:
        """The person at this machine's command line: a system administrator (the CLI needs
        the data directory and the configuration file, which only the server's owner has)."""
        try:
            login = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid
            login = "unknown"
        return cls(name=f"cli:{login}", system=True)

    @classmethod
    def from_admin(cls, admin: Admin, origin: str) -> Actor:
        """The actor for a stored administrator working from ``origin``."""
        return cls(admin.address, admin.system, frozenset(admin.domains), origin)

    def may_manage(self, domain: str) -> bool:
        """True when this actor administers ``domain`` (a canonical name)."""
        return self.system or domain.lower() in self.domains

    def require_system(self, what: str = "this") -> None:
        """Refuse unless this actor is a system administrator."""
        if not self.system:
            raise Forbidden(f"only a system administrator may do {what}")

    def require_domain(self, domain: str) -> None:
        """Refuse unless this actor administers ``domain``; the same words whether the domain
        exists or not."""
        if not self.may_manage(domain):
            raise Forbidden(f"you do not administer the domain {domain.lower()}")


def audit(directory: SQLDirectory, actor: Actor, action: str, target: str, **detail: Any) -> None:
    """Record that ``actor`` did ``action`` to ``target`` (now, from ``actor.origin``)."""
    from mailmax.core.directory.admins import AdminStore

    AdminStore(directory).audit(actor.name, actor.origin, action, target, _plain(detail))


def _plain(value: Any) -> Any:
    """``value`` made of JSON types (enums and paths become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
