"""Failed-login throttling shared by POP3, IMAP and SMTP AUTH.

Every failed login counts against the client IP and against the account name tried. The reply
to a failure is delayed, the delay doubling with each failure of that IP or account within the
window (``failure_delay`` up to ``max_failure_delay``); after ``block_after`` failures the IP or
account is blocked for ``block_seconds``: logins are refused without checking the password.

An unknown user and a wrong password look the same from outside: same reply, and the failure
reply never comes sooner than the penalty delay (at least ``failure_delay``), which is longer
than a password hash takes. A client that logged in to an account successfully keeps access to
that account from its IP while someone else's failures block the account name.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet import defer, task
from twisted.logger import Logger

T = TypeVar("T")
log = Logger(namespace="mailmax.auth")


class LoginBlocked(Exception):
    """Too many failed logins: the IP or the account is blocked for ``seconds`` more."""

    def __init__(self, seconds: float) -> None:
        minutes = max(1, round(seconds / 60))
        super().__init__(f"too many failed logins; try again in {minutes} minute(s)")
        self.seconds = seconds


@dataclass(slots=True)
class _Record:
    failures: int = 0
    first: float = 0.0
    blocked_until: float = 0.0


class AuthLimiter:
    """Counts failed logins per IP and per account; say how long to wait or block."""

    def __init__(
        self,
        *,
        failure_delay: float = 1.0,
        max_failure_delay: float = 15.0,
        block_after: int = 10,
        block_seconds: float = 900.0,
        window_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        if failure_delay < 0 or max_failure_delay < failure_delay or block_after < 1:
            raise ValueError("need 0 <= failure_delay <= max_failure_delay and block_after >= 1")
        self.failure_delay = failure_delay
        self.max_failure_delay = max_failure_delay
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._good: OrderedDict[tuple[str, str], float] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Any) -> AuthLimiter:
        """Build from ``settings.auth`` when the configuration has it, else the defaults."""
        section = getattr(settings, "auth", None)
        if section is None:
            return cls()
        return cls(
            failure_delay=getattr(section, "failure_delay", 1.0),
            max_failure_delay=getattr(section, "max_failure_delay", 15.0),
            block_after=getattr(section, "block_after", 10),
            block_seconds=60.0 * getattr(section, "block_minutes", 15.0),
            window_seconds=60.0 * getattr(section, "window_minutes", 15.0),
        )

    # ------------------------------------------------------------------ bookkeeping
    @staticmethod
    def account_key(login: str, default_domain: str = "") -> str:
        """The name failures of ``login`` count against (bare names get the default domain)."""
        name = login.strip().lower()
        if default_domain and not any(sep in name for sep in "@%/"):
            name = f"{name}@{default_domain.lower()}"
        return name

    def _record(self, kind: str, key: str, create: bool) -> _Record | None:
        now = self._clock()
        record = self._records.get((kind, key))
        expired = record is not None and now - record.first > self.window_seconds
        if record is not None and expired and record.blocked_until <= now:
            del self._records[(kind, key)]
            record = None
        if record is None and create:
            record = _Record(first=now)
            self._records[(kind, key)] = record
            while len(self._records) > self._max_entries:
                self._records.popitem(last=False)
        elif record is not None:
            self._records.move_to_end((kind, key))
        return record

    def _trusted(self, ip: str, account: str) -> bool:
        expiry = self._good.get((ip, account))
        return expiry is not None and expiry > self._clock()

    def blocked_for(self, ip: str, account: str) -> float:
        """Seconds the IP or the account is still blocked (0 when logins may be tried)."""
        now = self._clock()
        waits = []
        for kind, key in (("ip", ip), ("account", account)):
            if kind == "account" and self._trusted(ip, account):
                continue
            record = self._record(kind, key, create=False)
            if record is not None and record.blocked_until > now:
                waits.append(record.blocked_until - now)
        return max(waits, default=0.0)

    def failed(self, ip: str, account: str) -> float:
        """Count a failure; return how long to wait before replying."""
        now = self._clock()
        worst = 0
        for kind, key in (("ip", ip), ("account", account)):
            record = self._record(kind, key, create=True)
            assert record is not None
            record.failures += 1
            if record.failures >= self.block_after and record.blocked_until <= now:
                record.blocked_until = now + self.block_seconds
                log.warn(
                    "blocking {kind} {key} for {seconds:.0f}s after {failures} failed logins",
                    kind=kind,
                    key=key,
                    seconds=self.block_seconds,
                    failures=record.failures,
                )
            worst = max(worst, record.failures)
        return min(self.max_failure_delay, self.failure_delay * 2 ** (worst - 1))

    def succeeded(self, ip: str, account: str) -> None:
        """Forget the account's failures and trust this IP for this account for a while."""
        self._records.pop(("account", account), None)
        self._good[(ip, account)] = self._clock() + max(self.window_seconds, self.block_seconds)
        self._good.move_to_end((ip, account))
        while len(self._good) > self._max_entries:
            self._good.popitem(last=False)

    # ------------------------------------------------------------------ driving a login
    def attempt(
        self,
        ip: str,
        account: str,
        check: Callable[[], Awaitable[T | None]],
        reactor: Any,
    ) -> defer.Deferred[T | None]:
        """Run ``check`` (a password check giving a user or None) under the limits.

        Fires with the user, or with None no sooner than the penalty delay after the start;
        fails with :class:`LoginBlocked` (after ``failure_delay``) while blocked, without
        running ``check``.
        """

        async def run() -> T | None:
            started = reactor.seconds()
            blocked = self.blocked_for(ip, account)
            if blocked > 0:
                await task.deferLater(reactor, self.failure_delay, lambda: None)
                raise LoginBlocked(self.blocked_for(ip, account) or blocked)
            result = await check()
            if result is not None:
                self.succeeded(ip, account)
                return result
            delay = self.failed(ip, account)
            remaining = started + delay - reactor.seconds()
            if remaining > 0:
                await task.deferLater(reactor, remaining, lambda: None)
            return None

        return defer.ensureDeferred(run())


class RecentLogins:
    """Who logged in (POP3, IMAP) from which IP and when: POP-before-SMTP.

    The SMTP server asks :meth:`recent` whether a client IP logged in within the configured
    minutes; a relaying permission then follows from the mailbox login.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000):
        self._clock = clock
        self._max_entries = max_entries
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def note(self, ip: str, address: str) -> None:
        """Record a successful login of ``address`` from ``ip``."""
        self._seen[ip] = (self._clock(), address)
        self._seen.move_to_end(ip)
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)

    def recent(self, ip: str, within_seconds: float) -> str | None:
        """The address that logged in from ``ip`` within ``within_seconds``, or None."""
        entry = self._seen.get(ip)
        if entry is None or self._clock() - entry[0] > within_seconds:
            return None
        return entry[1]
