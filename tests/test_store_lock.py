"""The POP3 mailbox lock: one session at a time, stale locks, unlocking a ghost (S2, A12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailmax.core.store.lock import (
    LOCK_NAME,
    MailboxInUse,
    MailboxLock,
    clear_lock,
    holder,
    is_stale,
    read_lock,
)

HOLD = """
import sys, time
from pathlib import Path
from mailmax.core.store.lock import MailboxLock
lock = MailboxLock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def _hold_in_child(root: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


def test_second_session_is_refused(tmp_path: Path) -> None:
    """S2: while one session holds the mailbox, a second gets MailboxInUse naming the holder."""
    lock = MailboxLock.acquire(tmp_path)
    with pytest.raises(MailboxInUse) as info:
        MailboxLock.acquire(tmp_path)
    assert info.value.info is not None
    assert info.value.info.pid == os.getpid()
    assert "pop3 session of pid" in str(info.value)
    assert holder(tmp_path) == lock.info
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    assert holder(tmp_path) is None
    with MailboxLock.acquire(tmp_path) as again:
        assert again.held
    assert not again.held


def test_lock_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    """A12: a lock left by a crashed server is taken over automatically."""
    child = _hold_in_child(tmp_path)
    with pytest.raises(MailboxInUse):
        MailboxLock.acquire(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    info = read_lock(tmp_path)
    assert info is not None and info.pid == child.pid
    assert is_stale(info)
    assert holder(tmp_path) is None
    with MailboxLock.acquire(tmp_path) as lock:
        assert lock.info.pid == os.getpid()


def test_clear_lock_frees_a_ghost(tmp_path: Path) -> None:
    """A12: `mailmax user unlock` removes a lock held by a hung session."""
    child = _hold_in_child(tmp_path)
    try:
        info = clear_lock(tmp_path)
        assert info is not None and info.pid == child.pid
        assert not is_stale(info)
        with MailboxLock.acquire(tmp_path):
            pass
        assert clear_lock(tmp_path) is None
    finally:
        child.kill()
        child.wait(10)


def test_unreadable_lock_file_does_not_block(tmp_path: Path) -> None:
    """A12: garbage in an unheld lock file is no obstacle."""
    (tmp_path / LOCK_NAME).write_text("garbage")
    assert read_lock(tmp_path) is None
    with MailboxLock.acquire(tmp_path) as lock:
        assert read_lock(tmp_path) == lock.info
