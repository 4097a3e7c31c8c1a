"""``mailmax user unlock ADDRESS`` clears a ghost POP3 lock (A12)."""

from __future__ import annotations

import subprocess
import sys

from mailmax.core.store.lock import LOCK_NAME, MailboxInUse, MailboxLock
from tests.test_cli_support import make_system

HOLD = """
import sys, time
from pathlib import Path
from mailmax.core.store.lock import MailboxLock
lock = MailboxLock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_unlock_live_and_absent_lock(tmp_path):
    """A12: unlock removes a lock held by a hung session and says so; no lock is no error."""
    system = make_system(tmp_path)
    root = system.mail_dir() / "postmaster"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        try:
            MailboxLock.acquire(root)
            raise AssertionError("the mailbox should be locked")
        except MailboxInUse:
            pass
        answer = system.json("user", "unlock", "postmaster@example.test")
        result = answer["object"]
        assert answer["changed"] is True
        assert result["unlocked"] is True and result["pid"] == child.pid
        assert result["stale"] is False
        assert "no longer keeps other sessions out" in answer["message"]
        assert not (root / LOCK_NAME).exists()
        with MailboxLock.acquire(root):
            pass
    finally:
        child.kill()
        child.wait(10)
    out = system.ok("user", "unlock", "postmaster@example.test")
    assert "was not locked" in out


def test_unlock_stale_and_unknown_user(tmp_path):
    """A12: a lock left by a dead process is reported as stale; unknown users are an error."""
    system = make_system(tmp_path)
    root = system.mail_dir() / "postmaster"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "locked"
    child.kill()
    child.wait(10)
    out = system.ok("user", "unlock", "postmaster@example.test")
    assert "stale lock" in out and str(child.pid) in out
    err = system.fails("user", "unlock", "nobody@example.test")
    assert "no user 'nobody@example.test'" in err
