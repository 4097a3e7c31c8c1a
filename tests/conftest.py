"""Hooks for the whole test run (the shared fixtures are registered in the root conftest.py)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

_status: dict[str, int] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remember the run's exit status for :func:`pytest_unconfigure`."""
    _status["exit"] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Never let a thread a test forgot to stop hang the run after the summary.

    Threads still alive after a short grace are named on stderr, and the process exits with the
    run's own status instead of waiting for them forever.
    """
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in left:
        thread.join(timeout=5.0 / max(len(left), 1))
    left = [t for t in left if t.is_alive()]
    if left and "exit" in _status:
        names = sorted({t.name for t in left})
        print(f"\nwarning: {len(left)} threads left running by tests: {names}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_status["exit"])
