"""AsyncDirectory: the server's non-blocking, briefly cached view of a SQLDirectory."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from mailmax.core.directory.api import Domain, RecipientLookup, User
from mailmax.core.directory.sql import SQLDirectory


class AsyncDirectory:
    """Directory calls as Deferreds, run in a thread pool; look-ups cached briefly."""

    def __init__(
        self,
        directory: SQLDirectory,
        *,
        cache_seconds: float = 1.0,
        reactor: Any = None,
        threadpool: Any = None,
    ) -> None:
        self._directory = directory
        self._cache_seconds = cache_seconds
        self._reactor = reactor
        self._threadpool = threadpool

    @property
    def sync(self) -> SQLDirectory:
        """The blocking directory underneath."""
        return self._directory

    def start(self) -> None:
        """Start the thread pool when this object owns it."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the thread pool when this object owns it."""
        raise NotImplementedError

    def lookup_recipient(self, address: str) -> Deferred[RecipientLookup]:
        """See :meth:`SQLDirectory.lookup_recipient` (cached)."""
        raise NotImplementedError

    def authenticate(
        self, login: str, password: str, default_domain: str = ""
    ) -> Deferred[User | None]:
        """See :meth:`SQLDirectory.authenticate` (never cached; always in a thread)."""
        raise NotImplementedError

    def clear_password(
        self, login: str, default_domain: str = ""
    ) -> Deferred[tuple[User, str] | None]:
        """See :meth:`SQLDirectory.clear_password` (never cached)."""
        raise NotImplementedError

    def get_domain(self, name: str) -> Deferred[Domain | None]:
        """See :meth:`SQLDirectory.get_domain` (cached)."""
        raise NotImplementedError

    def get_user(self, address: str) -> Deferred[User | None]:
        """See :meth:`SQLDirectory.get_user` (cached)."""
        raise NotImplementedError

    def is_local_domain(self, name: str) -> Deferred[bool]:
        """See :meth:`SQLDirectory.is_local_domain` (cached)."""
        raise NotImplementedError

    def record_login(self, address: str, service: str, ip: str) -> Deferred[None]:
        """See :meth:`SQLDirectory.record_login`."""
        raise NotImplementedError
