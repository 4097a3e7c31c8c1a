"""What an authenticated user has sent today, kept in the plugin's key-value store.

A day is a UTC calendar day on the server's clock. Each user has two counters per day
(messages and bytes) that expire two days after they are made, so yesterday's counts vanish
by themselves and the counts survive a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

#: Seconds in a (UTC) day.
DAY = 86400
#: How long a day's counters are kept: the day itself and a day to spare.
KEEP_SECONDS = 2 * DAY
#: Longest address written into a key as it is (longer ones are hashed).
MAX_KEY_ADDRESS = 150


@dataclass(frozen=True)
class Sent:
    """Messages and bytes a user sent on one day."""

    messages: int = 0
    bytes: int = 0


def day_of(now: float) -> int:
    """The number of the UTC day ``now`` (seconds since the epoch) falls in."""
    return int(now // DAY)


def prefix(user: str, day: int) -> str:
    """The key prefix of ``user``'s counters for ``day``."""
    name = user.lower()
    if len(name) > MAX_KEY_ADDRESS:
        name = hashlib.sha256(name.encode()).hexdigest()
    return f"day:{day}:{name}:"


async def sent_on(kv: Any, user: str, day: int) -> Sent:
    """What ``user`` sent on ``day``."""
    start = prefix(user, day)
    found = await kv.items(start, limit=10)
    return Sent(int(found.get(start + "messages", 0)), int(found.get(start + "bytes", 0)))


def count(kv: Any, user: str, day: int, size: int) -> defer.Deferred[Any]:
    """Add one message of ``size`` bytes to ``user``'s counters for ``day``."""
    start = prefix(user, day)
    return defer.gatherResults(
        [
            kv.increment(start + "messages", 1, ttl=KEEP_SECONDS),
            kv.increment(start + "bytes", size, ttl=KEEP_SECONDS),
        ],
        consumeErrors=True,
    )
