"""LiveCopy: one read at a time however many callers wait, read again only when old, one copy
per host; on a fake clock."""

from __future__ import annotations

import types
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher

from mailmax.plugin import LiveCopy
from mailmax.testing import PluginHarness


class Counted(LiveCopy[int]):
    """A copy whose reads wait for the test to answer them."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[defer.Deferred[int]] = []

    def empty(self) -> int:
        return 0

    async def load(self, context: Any, now: float) -> int:
        answer: defer.Deferred[int] = defer.Deferred()
        self.pending.append(answer)
        return await answer


def test_callers_share_one_read_and_the_copy_is_read_again_when_old() -> None:
    clock = task.Clock()
    harness = PluginHarness(types.ModuleType("copier"), clock=clock)
    other = PluginHarness(types.ModuleType("copier"), clock=clock)
    host, context = harness.host, harness.context
    copy = Counted.of(host)
    assert Counted.of(host) is copy and copy.value == 0
    first = defer.ensureDeferred(copy.current(context, 2))
    second = defer.ensureDeferred(copy.current(context, 2))
    assert len(copy.pending) == 1  # the second caller waits for the first read
    copy.pending[0].callback(7)
    assert (harness.result(first), harness.result(second), copy.value) == (7, 7, 7)
    clock.advance(1.9)
    assert harness.result(defer.ensureDeferred(copy.current(context, 2))) == 7  # no read
    clock.advance(0.1)
    # an old copy answers at once while one read runs in the background
    assert harness.result(defer.ensureDeferred(copy.current(context, 2))) == 7
    assert harness.result(defer.ensureDeferred(copy.current(context, 2))) == 7
    assert len(copy.pending) == 2
    copy.pending[1].callback(8)
    assert harness.result(defer.ensureDeferred(copy.current(context, 2))) == 8
    clock.advance(2)
    assert harness.result(defer.ensureDeferred(copy.current(context, 2))) == 8
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        copy.pending[2].errback(RuntimeError("database gone"))  # logged; the old copy stays
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e["kind"] for e in events if "log_failure" in e] == ["Counted"]
    assert copy.value == 8 and not copy.fresh(clock.seconds(), 2)
    copy.invalidate()
    waiting = defer.ensureDeferred(copy.current(context, 2))  # invalidated: callers wait
    copy.pending[3].errback(RuntimeError("database gone"))
    with pytest.raises(RuntimeError, match="database gone"):
        harness.result(waiting)
    copy.invalidate()
    assert copy.loaded_at is None
    assert Counted.of(other.host) is not copy  # another host, another copy
    harness.close()
    other.close()


def test_a_subclass_must_say_how_to_load_and_what_is_there_before() -> None:
    """A copy that lacks ``load`` or ``empty`` cannot be made; the error names what is missing."""

    class NoLoad(LiveCopy[int]):
        def empty(self) -> int:
            return 0

    class NoEmpty(LiveCopy[int]):
        async def load(self, context: Any, now: float) -> int:
            return 1

    with pytest.raises(TypeError, match="load"):
        NoLoad()
    with pytest.raises(TypeError, match="empty"):
        NoEmpty()
