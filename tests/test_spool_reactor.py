"""A private reactor running in a helper thread, for tests of thread-using Twisted code.

The spool and the queue runner hand work to threads and come back with
``reactor.callFromThread``; their tests need a reactor that really runs. Each
:class:`ReactorThread` is its own reactor instance (never the global one), so it cannot
disturb other tests and can be started and stopped as often as needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from twisted.internet import defer, threads
from twisted.internet.selectreactor import SelectReactor

T = TypeVar("T")


class ReactorThread:
    """A reactor of its own running in a daemon thread; call into it with :meth:`call`."""

    def __init__(self) -> None:
        self.reactor = SelectReactor()
        self._thread = threading.Thread(target=self._run, name="test-reactor", daemon=True)
        self._thread.start()
        self.call(lambda: None)

    def _run(self) -> None:
        self.reactor.run(installSignalHandlers=False)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kw: Any) -> Any:
        """Run ``fn`` on the reactor thread; wait for its (possibly Deferred) result."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            d = defer.maybeDeferred(fn, *args, **kw)
            d.addCallbacks(lambda r: box.setdefault("result", r), lambda f: box.setdefault("f", f))
            d.addBoth(lambda _: done.set())

        self.reactor.callFromThread(run)
        if not done.wait(timeout):
            raise TimeoutError(f"{fn!r} did not finish within {timeout}s")
        if "f" in box:
            box["f"].raiseException()
        return box.get("result")

    def stop(self) -> None:
        """Stop the reactor and wait for its thread."""
        self.reactor.callFromThread(self.reactor.stop)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the test reactor did not stop"


def running_reactor() -> Iterator[ReactorThread]:
    """Body of a ``reactor_thread`` fixture: a running private reactor, stopped afterwards."""
    helper = ReactorThread()
    yield helper
    helper.stop()


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor, stopped after the test."""
    yield from running_reactor()


def test_reactor_thread_runs_thread_work_and_stops(reactor_thread: ReactorThread) -> None:
    """The helper runs Deferreds that come back from threads and reports their failures."""
    result = reactor_thread.call(
        threads.deferToThreadPool,
        reactor_thread.reactor,
        reactor_thread.reactor.getThreadPool(),
        lambda: threading.current_thread().name,
    )
    assert result != threading.current_thread().name
    with pytest.raises(ZeroDivisionError):
        reactor_thread.call(lambda: 1 / 0)
