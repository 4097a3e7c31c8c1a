"""AsyncDirectory: the server's non-blocking, briefly cached view of a SQLDirectory.

Every database call runs in a thread pool (``threads.deferToThreadPool``), never on the reactor
thread: an uncached SQLite recipient look-up measured about 0.8 ms on the reference machine,
above the 0.3 ms a reactor-thread call may take, and PostgreSQL calls wait on the network.
Password checks (argon2, tens of milliseconds) always run in the pool too.

Look-ups (recipients, domains, users, plugin overrides) are cached for ``cache_seconds`` (at
most 2 s), counted from when the query started, so a change made elsewhere (the CLI, the admin
API, another node) is seen within ``cache_seconds``. Concurrent misses for the same key share one
query. Log-ins and clear-password fetches are never cached.

:class:`TTLCache` is the same idea for blocking callers in threads (local delivery): answers are
kept for a short, bounded time; errors are never kept.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from mailmax.core.directory.api import Domain, RecipientLookup, User
from mailmax.core.directory.errors import DirectoryError, NotFound
from mailmax.core.directory.loginrecords import LoginRecorder
from mailmax.core.directory.sql import SQLDirectory

log = Logger(namespace="mailmax.directory")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

#: Longest allowed cache lifetime: admin changes must show within 2 seconds.
MAX_CACHE_SECONDS = 2.0


class AsyncDirectory:
    """Directory calls as Deferreds, run in a thread pool; look-ups cached briefly.

    Without a ``threadpool`` the object makes its own (``threads`` workers) and owns it:
    :meth:`start` starts it (the first call does too) and :meth:`stop` stops it; it is also
    stopped when the reactor shuts down. ``reactor`` defaults to the global reactor.
    """

    #: Cache entries kept before expired ones are dropped (all of them if none has expired).
    MAX_CACHE_ENTRIES = 20_000

    def __init__(
        self,
        directory: SQLDirectory,
        *,
        cache_seconds: float = 1.0,
        reactor: Any = None,
        threadpool: ThreadPool | None = None,
        threads: int = 4,
    ) -> None:
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise DirectoryError(
                f"cache_seconds must be 0 to {MAX_CACHE_SECONDS:g} so that changes show "
                f"within {MAX_CACHE_SECONDS:g} seconds, not {cache_seconds!r}"
            )
        if reactor is None:
            from twisted.internet import reactor  # the global one, only when needed
        self._directory = directory
        self._cache_seconds = float(cache_seconds)
        self._reactor = reactor
        self._owns_pool = threadpool is None
        self._pool = threadpool or ThreadPool(minthreads=1, maxthreads=threads, name="directory")
        self._started = False
        self._shutdown_trigger: Any = None
        self._cache: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._inflight: dict[tuple[str, Any], list[defer.Deferred]] = {}
        self._logins = LoginRecorder(
            lambda records: self.run(self._directory.record_logins, records), reactor
        )

    @property
    def sync(self) -> SQLDirectory:
        """The blocking directory underneath."""
        return self._directory

    @property
    def cache_seconds(self) -> float:
        """How long a look-up's answer is reused."""
        return self._cache_seconds

    def start(self) -> None:
        """Start the thread pool when this object owns it (does nothing otherwise or twice)."""
        if self._started or not self._owns_pool:
            return
        self._started = True
        self._pool.start()
        add_trigger = getattr(self._reactor, "addSystemEventTrigger", None)
        if add_trigger is not None:
            self._shutdown_trigger = add_trigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        """Write the log-ins not recorded yet; stop the owned thread pool, waiting for calls
        in progress; drop the cache."""
        self._cache.clear()
        records = self._logins.take()
        if records:
            try:
                self._directory.record_logins(records)
            except Exception:  # shutting down: say so, stop anyway
                log.failure("cannot record the last log-ins")
        if not self._started:
            return
        self._started = False
        if self._shutdown_trigger is not None:
            with contextlib.suppress(ValueError, KeyError):  # already fired: shutting down
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._pool.stop()

    def invalidate(self) -> None:
        """Forget every cached answer (after a change made through :attr:`sync`)."""
        self._cache.clear()

    def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Run any blocking call (e.g. a :attr:`sync` method) in the pool; never cached."""
        if self._owns_pool and not self._started:
            self.start()
        return threads.deferToThreadPool(self._reactor, self._pool, function, *args, **kwargs)

    def _cached(self, kind: str, key: Any, function: Callable[[Any], T]) -> defer.Deferred[T]:
        cache_key = (kind, key)
        started = self._reactor.seconds()
        entry = self._cache.get(cache_key)
        if entry is not None and entry[0] > started:
            return defer.succeed(entry[1])
        waiters = self._inflight.get(cache_key)
        if waiters is not None:
            waiting: defer.Deferred[T] = defer.Deferred()
            waiters.append(waiting)
            return waiting
        waiters = self._inflight[cache_key] = []

        def finished(result: T | Failure) -> T | Failure:
            del self._inflight[cache_key]
            if not isinstance(result, Failure) and self._cache_seconds > 0:
                self._remember(cache_key, started + self._cache_seconds, result)
            for waiting in waiters:
                if isinstance(result, Failure):
                    waiting.errback(result)
                else:
                    waiting.callback(result)
            return result

        return self.run(function, key).addBoth(finished)

    def _remember(self, cache_key: tuple[str, Any], expires: float, value: Any) -> None:
        if len(self._cache) >= self.MAX_CACHE_ENTRIES:
            now = self._reactor.seconds()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.MAX_CACHE_ENTRIES:
                self._cache.clear()
        self._cache[cache_key] = (expires, value)

    def lookup_recipient(self, address: str) -> defer.Deferred[RecipientLookup]:
        """See :meth:`SQLDirectory.lookup_recipient` (cached)."""
        return self._cached("recipient", address, self._directory.lookup_recipient)

    def get_domain(self, name: str) -> defer.Deferred[Domain | None]:
        """See :meth:`SQLDirectory.get_domain` (cached)."""
        return self._cached("domain", name, self._directory.get_domain)

    def get_user(self, address: str) -> defer.Deferred[User | None]:
        """See :meth:`SQLDirectory.get_user` (cached)."""
        return self._cached("user", address, self._directory.get_user)

    def is_local_domain(self, name: str) -> defer.Deferred[bool]:
        """See :meth:`SQLDirectory.is_local_domain` (cached)."""
        return self._cached("local", name, self._directory.is_local_domain)

    def get_plugin_overrides(
        self, plugin: str
    ) -> defer.Deferred[dict[tuple[str, str], tuple[bool | None, dict]]]:
        """See :meth:`SQLDirectory.get_plugin_overrides` (cached; do not change the result)."""
        return self._cached("overrides", plugin, self._directory.get_plugin_overrides)

    def authenticate(
        self, login: str, password: str, default_domain: str = ""
    ) -> defer.Deferred[User | None]:
        """See :meth:`SQLDirectory.authenticate`, in a thread.

        A successful log-in is answered again without the thread and the database for
        ``cache_seconds`` (like a look-up), when the same login name comes with the same
        password: only an HMAC of the password is kept (the key of the directory's log-in
        cache), and nothing when log-ins are not cached (``login_cache_seconds`` 0). A wrong
        password always goes to the directory.
        """
        login_cache = self._directory.login_cache
        lifetime = min(self._cache_seconds, login_cache.seconds)
        if lifetime <= 0:
            return self.run(self._directory.authenticate, login, password, default_domain)
        cache_key = ("login", (login, default_domain))
        digest = login_cache.digest(password)
        started = self._reactor.seconds()
        entry = self._cache.get(cache_key)
        if entry is not None and entry[0] > started and hmac.compare_digest(entry[1][0], digest):
            return defer.succeed(entry[1][1])

        def remember(user: User | None) -> User | None:
            if user is not None:
                self._remember(cache_key, started + lifetime, (digest, user))
            return user

        found = self.run(self._directory.authenticate, login, password, default_domain)
        return found.addCallback(remember)

    def clear_password(
        self, login: str, default_domain: str = ""
    ) -> defer.Deferred[tuple[User, str] | None]:
        """See :meth:`SQLDirectory.clear_password` (never cached)."""
        return self.run(self._directory.clear_password, login, default_domain)

    def user_maildir(self, user: User) -> defer.Deferred[Path]:
        """See :meth:`SQLDirectory.user_maildir` (the domain look-up is cached)."""
        return self.get_domain(user.domain).addCallback(self._maildir_of, user)

    def _maildir_of(self, domain: Domain | None, user: User) -> Path:
        if domain is None:
            raise NotFound(f"domain {user.domain} of {user.address} does not exist any more")
        return self._directory.domain_mail_path(domain) / user.name

    def record_login(self, address: str, service: str, ip: str) -> defer.Deferred[None]:
        """See :meth:`SQLDirectory.record_login`; written in batches (:mod:`.loginrecords`),
        the Deferred fires once this log-in is written."""
        return self._logins.record(address, service, ip)


class TTLCache(Generic[K, T]):
    """Answers of a blocking look-up kept for ``seconds`` (at most 2), safe to use from threads.

    ``get(key)`` returns the remembered answer while it is younger than ``seconds`` (counted
    from when the look-up started) and calls ``function(key)`` otherwise. An exception is passed
    on and never remembered. Two threads missing the same key at once may both call
    ``function``; the later answer wins. ``seconds=0`` disables the cache.
    """

    #: Entries kept before expired ones are dropped (all of them if none has expired).
    MAX_ENTRIES = 20_000

    def __init__(
        self,
        function: Callable[[K], T],
        seconds: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= seconds <= MAX_CACHE_SECONDS:
            raise DirectoryError(
                f"cache lifetime must be 0 to {MAX_CACHE_SECONDS:g} seconds, not {seconds!r}"
            )
        self._function = function
        self._seconds = float(seconds)
        self._clock = clock
        self._entries: dict[K, tuple[float, T]] = {}

    def get(self, key: K) -> T:
        """The answer for ``key``, remembered or freshly looked up (blocking)."""
        started = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > started:
            return entry[1]
        value = self._function(key)
        if self._seconds > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > started}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries = {}
            self._entries[key] = (started + self._seconds, value)
        return value

    def peek(self, key: K) -> T | None:
        """The remembered answer for ``key`` if it is still fresh, else None (no look-up)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def clear(self) -> None:
        """Forget every answer."""
        self._entries = {}
