"""Maildir++ store: folders, atomic and idempotent delivery, disk usage and limits (A5, S4)."""

from __future__ import annotations

import mailbox
import os
import threading
import time
from pathlib import Path

import pytest

from mailmax.core.store import maildir
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.maildir import (
    InvalidFolder,
    OverQuota,
    deliver,
    ensure_maildir,
    usage_bytes,
)

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


def test_ensure_maildir_creates_inbox_and_folders(tmp_path: Path) -> None:
    """S4: INBOX is the root's cur/new/tmp; folders (IMAP names, "/" between levels) are
    Maildir++ .Name dirs with a maildirfolder file, as the mailbox store and tools see them."""
    root = tmp_path / "example.com" / "bob"
    assert ensure_maildir(root) == root
    assert sorted(p.name for p in root.iterdir()) == ["cur", "new", "tmp"]
    sent = ensure_maildir(root, "Sent")
    assert sent == root / ".Sent"
    assert (sent / "maildirfolder").is_file()
    assert ensure_maildir(root, "Archive/2024") == root / ".Archive.2024"
    assert ensure_maildir(root, "v1.2") == root / ".v1%2E2"
    assert ensure_maildir(root, "inbox") == root
    assert MailStore(root).folders() == ["INBOX", "Archive/2024", "Sent", "v1.2"]
    assert sorted(mailbox.Maildir(root, create=False).list_folders()) == [
        "Archive.2024",
        "Sent",
        "v1%2E2",
    ]


@pytest.mark.parametrize("folder", ["", "a//b", "/lead", "trail/", "x\ny", "x" * 300])
def test_bad_folder_names_are_refused(tmp_path: Path, folder: str) -> None:
    """S4: folder names cannot escape the mailbox or create odd directories."""
    with pytest.raises(InvalidFolder) as info:
        ensure_maildir(tmp_path / "box", folder)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_dot_dot_levels_stay_inside_the_mailbox(tmp_path: Path) -> None:
    """S4: a level named ".." is a plain folder name inside the mailbox, never a path."""
    for name in ("../..", "../evil", ".."):
        path = ensure_maildir(tmp_path / "box", name)
        assert path.parent == tmp_path / "box"
    assert list(tmp_path.iterdir()) == [tmp_path / "box"]


def test_delivered_messages_are_seen_by_the_mailbox_store(tmp_path: Path) -> None:
    """S4: what the queue delivers (INBOX and a folder) is what POP3/IMAP read."""
    root = tmp_path / "box"
    deliver(root, "INBOX", MESSAGE, "0660aa00bb11cc22dd-0")
    deliver(root, "Archive/2024", MESSAGE + b"more\r\n", "0660aa00bb11cc22dd-1")
    store = MailStore(root)
    with store.open("INBOX") as inbox:
        (info,) = inbox.messages()
        assert inbox.read(info.uid) == MESSAGE
    with store.open("Archive/2024") as archive:
        (info,) = archive.messages()
        assert archive.read(info.uid) == MESSAGE + b"more\r\n"


def test_deliver_bytes_and_file_atomically(tmp_path: Path) -> None:
    """S4: a delivered message lands in new/ complete, with its size in the name; tmp/ is empty."""
    root = tmp_path / "box"
    first = deliver(root, "INBOX", MESSAGE, "q1-0", prefix=b"Return-Path: <a@example.org>\r\n")
    assert first.parent == root / "new"
    assert first.read_bytes() == b"Return-Path: <a@example.org>\r\n" + MESSAGE
    assert first.name.startswith("q1-0.")
    assert first.name.endswith(f",S={first.stat().st_size}")
    source = tmp_path / "spooled"
    source.write_bytes(MESSAGE * 1000)
    second = deliver(root, "Junk", source, "q2-0")
    assert second.parent == root / ".Junk" / "new"
    assert second.read_bytes() == MESSAGE * 1000
    assert os.listdir(root / "tmp") == [] and os.listdir(root / ".Junk" / "tmp") == []
    assert oct(second.stat().st_mode & 0o777) == "0o600"
    box = mailbox.Maildir(root, create=False)
    assert [m["Subject"] for m in box] == ["hi"]


def test_a_spooled_file_is_linked_or_copied_without_its_skipped_start(tmp_path: Path) -> None:
    """S4: ``link=True`` stores the file itself (a hard link, same inode, no copy); ``skip``
    copies the file without its first bytes; a link across file systems falls back to a copy."""
    root = tmp_path / "box"
    spooled = tmp_path / "spooled"
    trace = b"Return-Path: <a@example.org>\r\n"
    spooled.write_bytes(trace + MESSAGE)
    linked = deliver(root, "INBOX", spooled, "q1-0", link=True)
    assert os.path.samefile(linked, spooled) and spooled.stat().st_nlink == 2
    assert linked.name.endswith(f",S={spooled.stat().st_size}")
    assert deliver(root, "INBOX", spooled, "q1-0", link=True) == linked  # idempotent
    copied = deliver(root, "INBOX", spooled, "q2-0", skip=len(trace), prefix=b"X-New: 1\r\n")
    assert copied.read_bytes() == b"X-New: 1\r\n" + MESSAGE
    assert copied.name.endswith(f",S={len(MESSAGE) + 10}")
    with pytest.raises(ValueError):
        deliver(root, "INBOX", spooled, "q3-0", link=True, skip=1)
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or os.stat(other_fs).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("this test needs /dev/shm on a file system of its own")
    elsewhere = other_fs / f"mailmax-test-{os.getpid()}"
    try:
        elsewhere.write_bytes(MESSAGE)
        across = deliver(root, "Junk", elsewhere, "q4-0", link=True)
        assert across.read_bytes() == MESSAGE and not os.path.samefile(across, elsewhere)
    finally:
        elsewhere.unlink()


def test_deliver_is_idempotent_by_unique(tmp_path: Path) -> None:
    """S4: delivering the same unique name again writes nothing, also after the client moved
    the message to cur/ with flags; another unique name is a new message."""
    root = tmp_path / "box"
    first = deliver(root, "INBOX", MESSAGE, "0660abc-1")
    assert deliver(root, "INBOX", MESSAGE, "0660abc-1") == first
    seen = root / "cur" / (first.name + ":2,S")
    os.rename(first, seen)
    assert deliver(root, "INBOX", MESSAGE, "0660abc-1") == seen
    assert deliver(root, "INBOX", MESSAGE, "0660abc-1", fresh=True) != seen  # caller's promise
    assert deliver(root, "INBOX", MESSAGE, "0660abc-10").name.startswith("0660abc-10.")
    assert len(os.listdir(root / "new")) + len(os.listdir(root / "cur")) == 3


def test_concurrent_deliveries_of_one_unique_store_one_copy(tmp_path: Path) -> None:
    """S4: two threads delivering the same unique name at once leave exactly one message."""
    root = tmp_path / "box"
    ensure_maildir(root)
    results: list[Path] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        results.append(deliver(root, "INBOX", MESSAGE, "same-0", fresh=True))

    workers = [threading.Thread(target=run) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(set(results)) == 1
    assert len(os.listdir(root / "new")) == 1
    assert os.listdir(root / "tmp") == []


def test_invalid_unique_is_refused(tmp_path: Path) -> None:
    """S4: the unique name is part of a file name, so only safe characters are allowed."""
    for bad in ("", "a/b", "a.b", "x" * 200):
        with pytest.raises(ValueError):
            deliver(tmp_path / "box", "INBOX", MESSAGE, bad)


def test_quota_refuses_what_does_not_fit(tmp_path: Path) -> None:
    """A5: with a disk limit, a message that would exceed it raises OverQuota and writes
    nothing; usage counts every folder."""
    root = tmp_path / "box"
    size = len(MESSAGE)
    deliver(root, "INBOX", MESSAGE, "m-1", quota_bytes=3 * size)
    deliver(root, "Sent", MESSAGE, "m-2", quota_bytes=3 * size)
    deliver(root, "INBOX", MESSAGE, "m-3", quota_bytes=3 * size)
    assert usage_bytes(root) == usage_bytes(root, exact=True) == 3 * size
    with pytest.raises(OverQuota) as info:
        deliver(root, "INBOX", MESSAGE, "m-4", quota_bytes=3 * size)
    assert info.value.usage == 3 * size and info.value.quota == 3 * size
    assert len(os.listdir(root / "new")) == 2
    assert os.listdir(root / "tmp") == []
    deliver(root, "INBOX", MESSAGE, "m-5", quota_bytes=0)  # no limit: fine


def test_quota_cache_never_refuses_on_stale_figures(tmp_path: Path) -> None:
    """A5: after messages are removed behind the cache's back, a delivery that fits is taken
    (the cache is recounted before refusing), and the cache follows adjust_usage()."""
    root = tmp_path / "box"
    size = len(MESSAGE)
    paths = [deliver(root, "INBOX", MESSAGE, f"m-{i}", quota_bytes=2 * size) for i in range(2)]
    assert (root / "maildirsize").read_text().splitlines()[0] == f"{2 * size}S"
    paths[0].unlink()  # an expunge that did not tell the cache
    assert usage_bytes(root) == 2 * size  # stale but cheap
    deliver(root, "INBOX", MESSAGE, "m-2", quota_bytes=2 * size)
    assert usage_bytes(root) == 2 * size
    paths[1].unlink()
    maildir.adjust_usage(root, -size, -1)
    assert usage_bytes(root) == usage_bytes(root, exact=True) == size
    old = time.time() - 3600
    os.utime(root / "maildirsize", (old, old))
    assert usage_bytes(root) == size  # an old cache is recounted


def test_write_failure_raises_oserror_and_leaves_nothing(tmp_path: Path) -> None:
    """S4: a real failure (tmp/ is a file, not a directory) raises OSError; new/ stays empty."""
    root = tmp_path / "box"
    ensure_maildir(root)
    (root / "tmp").rmdir()
    (root / "tmp").write_bytes(b"")
    with pytest.raises(OSError):
        deliver(root, "INBOX", MESSAGE, "x-1")
    assert os.listdir(root / "new") == []
