"""Failed-login throttling shared by POP3, IMAP and SMTP AUTH.

Failed logins count three ways: per (client IP, account), per client IP and per account.

- ``block_after`` failures of one account from one IP block that pair: that IP may not try
  that account for ``block_seconds`` (logins are refused without checking the password).
- ``ip_block_after`` failures from one IP, whatever the accounts, block the IP, except for
  the accounts that logged in from it before (password spraying from one address).
- ``account_delay_after`` failures of one account, from anywhere, delay every later login to
  it from an address it has not logged in from (distributed guessing): the delay doubles with
  each failure up to ``max_failure_delay``. An account is never blocked: nobody can lock a
  user out of logging in from another address.

The reply to a failure is delayed too, doubling with the failures of the pair or the IP
(``failure_delay`` up to ``max_failure_delay``). Addresses in ``exempt`` are neither delayed
nor blocked and their failures do not count. The limiter never knows whether an account
exists: an unknown name is counted, delayed and blocked exactly like an existing one, and the
failure reply never comes sooner than the penalty delay, longer than a password hash takes.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet import defer, task
from twisted.logger import Logger

T = TypeVar("T")
log = Logger(namespace="mailmax.auth")

#: The kinds of failure records: (client IP, account), client IP, account.
PAIR, IP, ACCOUNT = "pair", "ip", "account"


class LoginBlocked(Exception):
    """Too many failed logins: this client may not try for ``seconds`` more."""

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
    """Counts failed logins per (IP, account), per IP and per account; says how long a
    client must wait or whether it is blocked (see the module text)."""

    def __init__(
        self,
        *,
        failure_delay: float = 1.0,
        max_failure_delay: float = 15.0,
        block_after: int = 10,
        ip_block_after: int = 30,
        account_delay_after: int = 5,
        block_seconds: float = 900.0,
        window_seconds: float = 900.0,
        exempt: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        if failure_delay < 0 or max_failure_delay < failure_delay or block_after < 1:
            raise ValueError("need 0 <= failure_delay <= max_failure_delay and block_after >= 1")
        if ip_block_after < 1 or account_delay_after < 1:
            raise ValueError("ip_block_after and account_delay_after must be at least 1")
        self.failure_delay = failure_delay
        self.max_failure_delay = max_failure_delay
        self.block_after = block_after
        self.ip_block_after = ip_block_after
        self.account_delay_after = account_delay_after
        self.block_seconds = block_seconds
        self.window_seconds = window_seconds
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._clock = clock
        self._max_entries = max_entries
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._good: OrderedDict[tuple[str, str], float] = OrderedDict()

    @staticmethod
    def _options(settings: Any) -> dict[str, Any]:
        section = getattr(settings, "auth", None)
        if section is None:
            return {}
        return {
            "failure_delay": getattr(section, "failure_delay", 1.0),
            "max_failure_delay": getattr(section, "max_failure_delay", 15.0),
            "block_after": getattr(section, "block_after", 10),
            "ip_block_after": getattr(section, "ip_block_after", 30),
            "account_delay_after": getattr(section, "account_delay_after", 5),
            "block_seconds": 60.0 * getattr(section, "block_minutes", 15.0),
            "window_seconds": 60.0 * getattr(section, "window_minutes", 15.0),
            "exempt": getattr(section, "exempt_networks", ()),
        }

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> AuthLimiter:
        """Build from ``settings.auth`` when the configuration has it, else the defaults."""
        return cls(**cls._options(settings), **kw)

    def reconfigure(self, settings: Any) -> None:
        """Take the limits of ``settings.auth`` (a reload); the failures counted so far stay."""
        fresh = AuthLimiter(**self._options(settings))
        for name in (
            "failure_delay",
            "max_failure_delay",
            "block_after",
            "ip_block_after",
            "account_delay_after",
            "block_seconds",
            "window_seconds",
            "exempt",
        ):
            setattr(self, name, getattr(fresh, name))

    # ------------------------------------------------------------------ bookkeeping
    @staticmethod
    def account_key(login: str, default_domain: str = "") -> str:
        """The name failures of ``login`` count against (bare names get the default domain)."""
        name = login.strip().lower()
        if default_domain and not any(sep in name for sep in "@%/"):
            name = f"{name}@{default_domain.lower()}"
        return name

    def is_exempt(self, ip: str) -> bool:
        """True when ``ip`` is in an exempt network."""
        if not self.exempt:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    @staticmethod
    def _pair(ip: str, account: str) -> str:
        return f"{ip} {account}"

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

    def _penalty(self, failures: int, after: int = 1) -> float:
        """The delay after ``failures`` failures, starting at ``after``."""
        if failures < after:
            return 0.0
        return min(self.max_failure_delay, self.failure_delay * 2 ** min(failures - after, 32))

    def blocked_for(self, ip: str, account: str) -> float:
        """Seconds this IP may not try this account (0 when it may)."""
        now = self._clock()
        keys = [(PAIR, self._pair(ip, account))]
        if not self._trusted(ip, account):
            keys.append((IP, ip))
        waits = []
        for kind, key in keys:
            record = self._record(kind, key, create=False)
            if record is not None and record.blocked_until > now:
                waits.append(record.blocked_until - now)
        return max(waits, default=0.0)

    def account_delay(self, ip: str, account: str) -> float:
        """Seconds a login to ``account`` from ``ip`` waits before its password is checked:
        0 unless the account has had ``account_delay_after`` failures in the window and has
        not logged in from this IP before."""
        if self._trusted(ip, account):
            return 0.0
        record = self._record(ACCOUNT, account, create=False)
        return self._penalty(record.failures, self.account_delay_after) if record else 0.0

    def failed(self, ip: str, account: str) -> float:
        """Count a failure; return how long its reply waits (after the start of the login)."""
        now = self._clock()
        worst = 0
        for kind, key, limit in (
            (PAIR, self._pair(ip, account), self.block_after),
            (IP, ip, self.ip_block_after),
            (ACCOUNT, account, 0),
        ):
            record = self._record(kind, key, create=True)
            assert record is not None
            record.failures += 1
            if kind == ACCOUNT:
                continue
            worst = max(worst, record.failures)
            if record.failures >= limit and record.blocked_until <= now:
                record.blocked_until = now + self.block_seconds
                log.warn(
                    "blocking {what} for {seconds:.0f}s after {failures} failed logins",
                    what=f"IP {ip}" if kind == IP else f"IP {ip} for {account}",
                    seconds=self.block_seconds,
                    failures=record.failures,
                )
        return self._penalty(worst)

    def succeeded(self, ip: str, account: str) -> None:
        """Forget the failures of this IP on this account and trust the pair for a while
        (no IP block or account delay for it)."""
        self._records.pop((PAIR, self._pair(ip, account)), None)
        self._good[(ip, account)] = self._clock() + max(self.window_seconds, self.block_seconds)
        self._good.move_to_end((ip, account))
        while len(self._good) > self._max_entries:
            self._good.popitem(last=False)

    # ------------------------------------------------------------------ admin
    def current(self) -> list[dict[str, Any]]:
        """Every block and account delay in force: ``kind`` (``ip``, ``pair``, ``account``),
        ``ip``, ``account``, ``failures``, ``blocked_seconds``, ``delay_seconds``."""
        now = self._clock()
        rows = []
        for (kind, key), record in list(self._records.items()):
            if self._record(kind, key, create=False) is None:
                continue  # expired
            blocked = max(0.0, record.blocked_until - now)
            delay = (
                self._penalty(record.failures, self.account_delay_after) if kind == ACCOUNT else 0.0
            )
            if not blocked and not delay:
                continue
            ip, _, account = key.partition(" ") if kind == PAIR else (key, "", "")
            if kind == ACCOUNT:
                ip, account = "", key
            rows.append(
                {
                    "kind": kind,
                    "ip": ip,
                    "account": account,
                    "failures": record.failures,
                    "blocked_seconds": round(blocked, 1),
                    "delay_seconds": round(delay, 1),
                }
            )
        return sorted(rows, key=lambda row: (row["kind"], row["ip"], row["account"]))

    def unblock(self, target: str) -> int:
        """Forget the failures of an IP (its blocks, with every account) or of an account
        (its delay, and its blocks from every IP); returns how many records went."""
        target = target.strip()
        try:
            ip: str | None = str(ipaddress.ip_address(target))
        except ValueError:
            ip = None
        account = self.account_key(target)
        gone = []
        for kind, key in list(self._records):
            if ip is not None:
                match = (kind == IP and key == ip) or (kind == PAIR and key.split(" ")[0] == ip)
            else:
                match = (kind == ACCOUNT and key == account) or (
                    kind == PAIR and key.partition(" ")[2] == account
                )
            if match:
                gone.append((kind, key))
        for entry in gone:
            del self._records[entry]
        if gone:
            log.info("failed logins of {target} forgotten by the admin", target=target)
        return len(gone)

    # ------------------------------------------------------------------ driving a login
    def attempt(
        self,
        ip: str,
        account: str,
        check: Callable[[], Awaitable[T | None]],
        reactor: Any,
    ) -> defer.Deferred[T | None]:
        """Run ``check`` (a password check giving a user or None) under the limits.

        Waits the account's delay first, if any; fires with the user, or with None no
        sooner than the penalty delay after the check began; fails with
        :class:`LoginBlocked` (after ``failure_delay``) while blocked, without running
        ``check``.
        """
        if self.is_exempt(ip):
            return defer.ensureDeferred(check())

        async def run() -> T | None:
            blocked = self.blocked_for(ip, account)
            if blocked > 0:
                await task.deferLater(reactor, self.failure_delay, lambda: None)
                raise LoginBlocked(self.blocked_for(ip, account) or blocked)
            delay = self.account_delay(ip, account)
            if delay > 0:
                await task.deferLater(reactor, delay, lambda: None)
            started = reactor.seconds()
            result = await check()
            if result is not None:
                self.succeeded(ip, account)
                return result
            remaining = started + self.failed(ip, account) - reactor.seconds()
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
