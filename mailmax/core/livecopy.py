"""A running server's copy of something a plugin keeps in the directory, read again when old.

A table that every connection or command consults would cost a query each time. A plugin keeps
one :class:`LiveCopy` per plugin host instead (:meth:`LiveCopy.of`): the copy is read again
when it is older than the plugin's refresh time, so a change made with the CLI (or by another
node) holds within that time and one read. Before the first read (or after
:meth:`LiveCopy.invalidate`) callers wait for that one read; an old copy answers at once while
it is read again in the background, so no session waits for the database once the copy exists.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from typing import Any, Generic, Self, TypeVar

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

T = TypeVar("T")

_BY_HOST: weakref.WeakKeyDictionary[Any, dict[type, Any]] = weakref.WeakKeyDictionary()


class LiveCopy(ABC, Generic[T]):
    """The current ``value`` of one host's copy; a subclass says how to :meth:`load` it and
    what :meth:`empty` holds before the first read."""

    def __init__(self) -> None:
        self.value: T = self.empty()
        #: Clock seconds of the last read (None: not read yet, or invalidated).
        self.loaded_at: float | None = None
        self._waiting: list[defer.Deferred[T]] | None = None

    @classmethod
    def of(cls, host: Any) -> Self:
        """The copy of this kind that ``host`` (a running server's plugin host) keeps."""
        copies = _BY_HOST.setdefault(host, {})
        found = copies.get(cls)
        if found is None:
            found = copies[cls] = cls()
        return found

    @abstractmethod
    def empty(self) -> T:
        """The value before the first read."""

    @abstractmethod
    async def load(self, context: Any, now: float) -> T:
        """Read the value now (``context`` is the plugin's; ``now`` its host's clock)."""

    def invalidate(self) -> None:
        """Make the next look-up read again (after this process changed what it copies)."""
        self.loaded_at = None

    def fresh(self, now: float, refresh_seconds: float) -> bool:
        """True when the copy was read less than ``refresh_seconds`` ago."""
        return self.loaded_at is not None and now - self.loaded_at < refresh_seconds

    async def current(self, context: Any, refresh_seconds: float) -> T:
        """The value; when it is older than ``refresh_seconds`` a new read starts and the old
        value answers meanwhile (only a copy never read, or invalidated, waits for the read)."""
        if self.fresh(context.host.clock.seconds(), refresh_seconds):
            return self.value
        if self.loaded_at is None:
            return await self.read(context)
        if self._waiting is None:
            reading = defer.ensureDeferred(self.read(context))
            reading.addErrback(
                lambda failure: log.failure(
                    "reading {kind} again failed; the older copy stays in use",
                    failure,
                    kind=type(self).__name__,
                )
            )
        return self.value

    async def read(self, context: Any) -> T:
        """Read the value now (or wait for the read under way)."""
        if self._waiting is not None:
            waiter: defer.Deferred[T] = defer.Deferred()
            self._waiting.append(waiter)
            return await waiter
        self._waiting = []
        now = context.host.clock.seconds()
        try:
            value = await self.load(context, now)
        except BaseException as exc:
            waiting, self._waiting = self._waiting, None
            for waiter in waiting:
                waiter.errback(exc)
            raise
        self.value, self.loaded_at = value, now
        waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            waiter.callback(value)
        return value
