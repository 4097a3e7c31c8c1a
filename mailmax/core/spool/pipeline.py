"""The commit thread of a group commit with ``sync="filesystem"``: overlapping syncs.

A message's files are written into ``tmp/``; a sync of the file system that *began* after they
were written makes them durable; then they are renamed into place, and a sync that began after
the renames makes those durable, and only then is the message answered. Each sync is numbered
as it starts; whatever waits for a sync (written files, renames, :meth:`after_sync` callers)
notes the number of the next one to start and is covered once any sync with that number or a
higher one has ended (it began later).

Up to :data:`SYNCS_IN_FLIGHT` syncs run at once: a message written while a sync runs starts the
next one at once instead of waiting for the running one to end first, so it waits for about
two syncs, not two and a half. A sync also writes out what the one before it had not reached,
so a busy spool still syncs about once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailmax.core.spool import trace

if TYPE_CHECKING:
    from mailmax.core.spool.writer import WriteItem

#: Syncs of the queue's file system that may run at the same time. Two shorten a message's wait
#: for its sync a little, but showed no gain in acceptance rates and, in some runs, more CPU per
#: message in the writer process (more, smaller syncs); so one, as before, by default.
SYNCS_IN_FLIGHT = 1


@dataclass
class _Waiting:
    """What waits for a sync numbered ``need`` or later: items or callbacks."""

    need: int
    items: list[WriteItem] = field(default_factory=list)
    callbacks: list[Callable[[OSError | None], None]] = field(default_factory=list)
    synced: tuple[float, float] = (0.0, 0.0)  # with a trace: the sync before the renames
    renamed: float = 0.0  # with a trace: when the items were renamed


class SyncPipelineMixin:
    """The ``sync="filesystem"`` commit loop of :class:`~mailmax.core.spool.writer.GroupCommit`."""

    # provided by GroupCommit
    max_batch: int
    _cond: threading.Condition
    _ready: list[WriteItem]
    _sync_waiters: list[Callable[[OSError | None], None]]
    _writing: int
    _stopping: bool
    _finished: bool
    _done: Callable[[list[WriteItem]], None]
    _rename: Callable[[list[WriteItem]], list[WriteItem]]
    _discard: Callable[[list[WriteItem]], None]
    _sync_now: Callable[[], None]

    def _pipeline(self) -> None:
        """Commit thread: move written items through their two syncs until stopped."""
        written: list[_Waiting] = []  # files waiting for a sync before their renames
        moved: list[_Waiting] = []  # renames (and after_sync callers) waiting for a sync
        ended: list[tuple[int, OSError | None, float, float]] = []
        started = running = 0
        syncs = ThreadPoolExecutor(SYNCS_IN_FLIGHT, thread_name_prefix="spool-sync")

        def run_sync(number: int) -> None:
            began, error = trace.now(), None
            try:
                self._sync_now()
            except OSError as exc:
                error = exc
            except BaseException as exc:  # never leave the commit thread waiting
                error = OSError(str(exc))
            with self._cond:
                ended.append((number, error, began, trace.now()))
                self._cond.notify_all()

        try:
            while True:
                with self._cond:
                    while not (
                        self._ready
                        or self._sync_waiters
                        or ended
                        or (
                            self._stopping
                            and self._writing == 0
                            and not (written or moved or running)
                        )
                    ):
                        self._cond.wait()
                    if not (self._ready or self._sync_waiters or ended):
                        self._finished = True
                        return
                    batch = self._ready[: self.max_batch]
                    del self._ready[: self.max_batch]
                    callbacks, self._sync_waiters = self._sync_waiters, []
                    results = sorted(ended)
                    ended.clear()
                for number, error, began, finished in results:
                    running -= 1
                    moved = self._after_sync(moved, number, error, (began, finished))
                    written, advanced = _split(written, number)
                    for waiting in advanced:
                        moved.extend(self._renamed(waiting, error, (began, finished), started))
                if batch or callbacks:
                    self._fail([item for item in batch if item.error is not None])
                    fresh = _Waiting(started + 1, [i for i in batch if i.error is None])
                    if fresh.items:
                        written.append(fresh)
                    if callbacks:
                        moved.append(_Waiting(started + 1, callbacks=callbacks))
                if running < SYNCS_IN_FLIGHT and any(w.need > started for w in (*written, *moved)):
                    started += 1
                    running += 1
                    syncs.submit(run_sync, started)
        finally:
            syncs.shutdown(wait=True)

    def _after_sync(
        self,
        moved: list[_Waiting],
        number: int,
        error: OSError | None,
        times: tuple[float, float],
    ) -> list[_Waiting]:
        """Sync ``number`` ended: answer the renamed items and callers it covers."""
        remaining, covered = _split(moved, number)
        for waiting in covered:
            for item in waiting.items:
                if error is None:
                    item.stage = "committed"
                else:
                    item.error = error
            for callback in waiting.callbacks:
                callback(error)
            if waiting.items:
                self._discard(waiting.items)  # what the sync did not make durable
                self._done(waiting.items)
                if trace.TRACE is not None:
                    _trace_batch(trace.TRACE, waiting, times)
        return remaining

    def _renamed(
        self,
        waiting: _Waiting,
        error: OSError | None,
        times: tuple[float, float],
        started: int,
    ) -> list[_Waiting]:
        """The files of ``waiting`` are durable (or ``error``): rename them into place; the
        renamed wait for the next sync to start."""
        items = waiting.items
        for item in items:
            item.error = item.error or error
        try:
            renamed = self._rename(items)
        except BaseException as exc:  # never leave an item unanswered
            for item in items:
                item.error = item.error or exc
            renamed = []
        self._fail([item for item in items if item not in renamed])
        if not renamed:
            return []
        return [_Waiting(started + 1, renamed, synced=times, renamed=trace.now())]

    def _fail(self, items: list[WriteItem]) -> None:
        """Answer items that will not be committed (their files removed first)."""
        if items:
            self._discard(items)
            self._done(items)


def _split(waiting: list[_Waiting], number: int) -> tuple[list[_Waiting], list[_Waiting]]:
    """(still waiting, covered by the sync ``number``)."""
    return [w for w in waiting if w.need > number], [w for w in waiting if w.need <= number]


def _trace_batch(tracing: trace.StageTrace, waiting: _Waiting, sync2: tuple[float, float]) -> None:
    """Record the stages of items just answered (see :mod:`mailmax.core.spool.trace`)."""
    tracing.record(
        p="writer",
        ids=[item.queue_id for item in waiting.items],
        read=[item.read for item in waiting.items],
        written=[item.written for item in waiting.items],
        sync1=waiting.synced,
        renamed=waiting.renamed,
        sync2=sync2,
        sent=trace.now(),
    )


__all__ = ["SYNCS_IN_FLIGHT", "SyncPipelineMixin"]
