"""The store's \\Recent marks for APPEND/COPY, index upgrades that keep UIDs, and the public
quota check sessions use (S3, A5).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mailmax.core.store.index import INDEX_NAME
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.maildir import QUOTA_FILE, deliver
from mailmax.core.store.quota import OverQuota, check_quota

MSG = b"From: a@example.test\r\nSubject: test\r\n\r\nbody\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "alice", fsync=False)


def test_appended_and_copied_messages_are_recent_once(store: MailStore) -> None:
    """S3: APPEND and COPY make messages recent (their files go straight to cur/); the first
    claim takes them, a second claims nothing; expunged ones are forgotten."""
    store.create_folder("Archive")
    deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-1", fsync=False)
    with store.open("Archive") as archive, store.open() as inbox:
        assert archive.append(MSG, ["\\Seen"]) == 1
        assert inbox.claim_recent() == [1]
        assert inbox.copy([1], archive) == [(1, 2)]
        assert archive.append(MSG) == 3
        assert all(p.parent.name == "cur" for p in (store.root / ".Archive").glob("*/*"))
        archive.refresh()
        assert archive.recent_count() == 3
        assert archive.recent_uids() == {1, 2, 3}
        archive.expunge([3])
        assert archive.recent_count() == 2
    with store.open("Archive") as first, store.open("Archive") as second:
        assert first.claim_recent() == [1, 2]
        assert second.claim_recent() == []
        assert second.recent_count() == 0 and second.recent_uids() == set()


def test_index_of_the_previous_version_is_upgraded_in_place(store: MailStore) -> None:
    """S3: an index written before \\Recent marks existed keeps its UIDVALIDITY and UIDs."""
    for i in range(3):
        deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-{i}", fsync=False)
    with store.open() as folder:
        folder.expunge([2])
        uidvalidity = folder.uidvalidity
    with sqlite3.connect(store.root / INDEX_NAME) as conn:  # as version 1 left it
        conn.execute("DROP TABLE recent")
        conn.execute("UPDATE state SET version = 1")
    with store.open() as folder:
        assert folder.uidvalidity == uidvalidity
        assert folder.uids() == (1, 3)
        assert folder.append(MSG) == 4
    assert not (store.root / (INDEX_NAME + ".damaged")).exists()


def test_quota_check(store: MailStore) -> None:
    """A5: no limit never refuses; a message that does not fit is refused with the usage; a
    stale maildirsize claiming a full mailbox does not refuse (the files are counted)."""
    size = len(MSG)
    for i in range(3):
        deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-{i}", fsync=False)
    assert check_quota(store.root, 10**12, 0) == 0
    assert check_quota(store.root, size, 4 * size) == 3 * size
    with pytest.raises(OverQuota) as refused:
        check_quota(store.root, size + 1, 4 * size)
    assert (refused.value.usage, refused.value.size, refused.value.quota) == (
        3 * size,
        size + 1,
        4 * size,
    )
    (store.root / QUOTA_FILE).write_text(f"{4 * size}S\n{100 * size} 100\n")
    assert check_quota(store.root, size, 4 * size) == 3 * size
