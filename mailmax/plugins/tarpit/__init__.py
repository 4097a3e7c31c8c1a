"""tarpit: slow down, then cut off and block, a client that tries many bogus recipients.

Every recipient the server refuses (unknown or disabled user, relaying denied) counts; a
``452`` (too many recipients, another transaction) does not. From ``trigger`` refused
recipients on, each further reply of the session waits, ``delay`` seconds at first, growing
by ``growth`` each time up to ``max_delay``; the wait runs on the reactor's clock and holds
only this session. At ``disconnect_after`` refused recipients the session is closed and the
client's address is blocked for ``block_minutes``: it gets ``421`` when it connects again.
Blocks are kept in the plugin's store in the directory, so they survive a restart, each with
its cause, reason and times. Authenticated and trusted sessions are never tarpitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import model_validator
from twisted.internet import defer, task

from mailmax.plugin import (
    Field,
    PluginSettings,
    Session,
    current_host,
    disconnect,
    hookimpl,
    tempfail,
)

NAME = "tarpit"
#: Where the plugin can be switched on, off or configured (its hooks run for connections).
SCOPES = ("system", "listener")
#: The key-value store key of a blocked address.
BLOCK_PREFIX = "block:"
#: The cause recorded with every block this plugin sets.
CAUSE = "tarpit"


class Settings(PluginSettings):
    """When a session is slowed down, how much, and when it is cut off and blocked."""

    trigger: int = Field(
        3, ge=1, le=1000, description="Refused recipients in a session before replies slow down."
    )
    delay: float = Field(2.0, gt=0, le=300, description="Seconds the first slowed reply waits.")
    growth: float = Field(
        2.0, ge=1, le=10, description="Factor each further slowed reply's wait grows by."
    )
    max_delay: float = Field(30.0, gt=0, le=600, description="Longest wait before one reply.")
    disconnect_after: int = Field(
        10,
        ge=0,
        le=10000,
        description="Refused recipients in a session that close it and block the client"
        " (0: never).",
    )
    block_minutes: float = Field(
        30.0, ge=0, le=525600, description="How long a cut-off client stays blocked (0: not)."
    )
    exempt_authenticated: bool = Field(True, description="Never tarpit authenticated sessions.")
    exempt_trusted: bool = Field(True, description="Never tarpit trusted clients.")

    @model_validator(mode="after")
    def _order(self) -> Settings:
        if self.disconnect_after and self.disconnect_after < self.trigger:
            raise ValueError(
                f"disconnect_after ({self.disconnect_after}) must not be below trigger"
                f" ({self.trigger})"
            )
        return self


#: Seconds a look-up of a client's block is reused (a block set by another node shows after it).
RECHECK_SECONDS = 2.0
#: Addresses whose block look-up is remembered at most.
MAX_REMEMBERED = 10000


class RecentBlocks:
    """Recent answers of the block store, so that a busy server does not ask the directory at
    every connection."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, ip: str, now: float) -> tuple[bool, Any]:
        """(True, block or None) when the answer for ``ip`` is recent."""
        entry = self._entries.get(ip)
        if entry is None or not entry[0] <= now < entry[0] + RECHECK_SECONDS:
            return False, None
        return True, entry[1]

    def put(self, ip: str, block: Any, now: float) -> None:
        """Remember the answer for ``ip``."""
        self._entries.pop(ip, None)
        if len(self._entries) >= MAX_REMEMBERED:
            self._entries.pop(next(iter(self._entries)))
        self._entries[ip] = (now, block)


RECENT = RecentBlocks()


@dataclass
class Tarpit:
    """A session's refused recipients and how many of its replies were slowed."""

    refused: int = 0
    slowed: int = 0


def wait_for(state: Tarpit, config: Settings) -> float:
    """Seconds the next reply of a session in ``state`` waits (0 below the trigger)."""
    if state.refused < config.trigger:
        return 0.0
    grown = config.delay * math.pow(config.growth, min(state.slowed, 64))
    return min(config.max_delay, grown)


def _exempt(session: Session, config: Settings) -> bool:
    return bool(
        (config.exempt_authenticated and session.auth_user is not None)
        or (config.exempt_trusted and session.trusted)
    )


def _slow(session: Session, config: Settings) -> defer.Deferred[None] | None:
    """Hold the reply (a Deferred on the reactor's clock) when the session is tarpitted."""
    if _exempt(session, config):
        return None
    state = session.stash.get(Tarpit)
    seconds = wait_for(state, config)
    if not seconds:
        return None
    state.slowed += 1
    return task.deferLater(current_host().clock, seconds, lambda: None)


async def _connect(session: Session, config: Settings) -> Any:
    if _exempt(session, config):
        return None
    host = current_host()
    now = host.clock.seconds()
    known, block = RECENT.get(session.peer_ip, now)
    if not known:
        block = await host.for_plugin(NAME).kv.get(BLOCK_PREFIX + session.peer_ip)
        RECENT.put(session.peer_ip, block, now)
    if not block or float(block.get("until", 0)) <= now:
        return None
    minutes = max(1, math.ceil((float(block.get("until", 0)) - now) / 60))
    return tempfail(
        f"Client host [{session.peer_ip}] blocked for {minutes} more minute(s)"
        " after too many unknown recipients",
        421,
        "4.7.1",
    )


async def _refused(session: Session, config: Settings) -> Any:
    if _exempt(session, config):
        return None
    state = session.stash.get(Tarpit)
    state.refused += 1
    if config.disconnect_after and state.refused >= config.disconnect_after:
        host = current_host()
        context = host.for_plugin(NAME)
        now = host.clock.seconds()
        if config.block_minutes:
            seconds = config.block_minutes * 60
            block = {
                "ip": session.peer_ip,
                "cause": CAUSE,
                "reason": f"{state.refused} unknown recipients in one session",
                "since": now,
                "until": now + seconds,
            }
            await context.kv.set(BLOCK_PREFIX + session.peer_ip, block, ttl=seconds)
            RECENT.put(session.peer_ip, block, now)
        context.log.info(
            "{ip}: closed after {count} refused recipients, blocked for {minutes} min",
            ip=session.peer_ip,
            count=state.refused,
            minutes=config.block_minutes,
        )
        context.metrics.increment("blocked")
        return disconnect("Too many unknown recipients, closing connection", 421, "4.7.1")
    await (_slow(session, config) or defer.succeed(None))
    return None


@hookimpl
def mailmax_connect(session: Session, config: Settings) -> Any:
    """Refuse (421) a client whose address is blocked."""
    return defer.ensureDeferred(_connect(session, config))


@hookimpl
def mailmax_rcpt_refused(session: Session, config: Settings) -> Any:
    """Count a refused recipient; slow its reply, or close the session and block the client."""
    return defer.ensureDeferred(_refused(session, config))


@hookimpl
def mailmax_helo(session: Session, config: Settings) -> Any:
    """Slow the reply of a tarpitted session."""
    return _slow(session, config)


@hookimpl
def mailmax_mail_from(session: Session, config: Settings) -> Any:
    """Slow the reply of a tarpitted session."""
    return _slow(session, config)


@hookimpl
def mailmax_rcpt_to(session: Session, config: Settings) -> Any:
    """Slow the reply of a tarpitted session."""
    return _slow(session, config)
