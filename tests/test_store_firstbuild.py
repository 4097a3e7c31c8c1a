"""The first build of a big folder's index is finished behind the caller (S3): the facts a
SELECT reports come first, every other use of the index waits for the commit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailmax.core.store.errors import StoreError
from mailmax.core.store.index import FolderIndex
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.scan import BULK_ROWS

MSG = b"From: a@example.test\r\nSubject: build\r\n\r\nbody\r\n"


def _big(root: Path, count: int, new: int = 0) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sub = "new" if i < new else "cur"
        info = "" if sub == "new" else f":2,{'S' if i % 3 else ''}"
        (root / sub / f"{1_700_000_000 + i}.M1P1Q{i}.host,S={len(MSG)}{info}").write_bytes(MSG)


def test_facts_come_first_and_match_the_index(tmp_path: Path) -> None:
    """S3: a big first build announces count, UIDs and first unseen message before its rows
    are written; the index then holds exactly that, for this and for other sessions."""
    root = tmp_path / "big"
    count = BULK_ROWS + 7
    _big(root, count)
    store = MailStore(root, fsync=False)
    with store.open() as folder:
        early = folder.early
        assert early is not None
        assert (len(folder), folder.uidnext, early.first_unseen_position) == (count, count + 1, 1)
        with store.open() as other:  # waits for the commit; sees every row
            assert other.early is None and len(other) == count
        assert [m.uid for m in folder.messages()] == list(range(1, count + 1))
        assert folder.position(folder.first_unseen() or 0) == early.first_unseen_position
        assert folder.uidvalidity == other.uidvalidity
        assert folder.unseen() == sum(1 for i in range(count) if i % 3 == 0)


def test_new_messages_and_small_folders_are_built_before_the_answer(tmp_path: Path) -> None:
    """S3: messages still in new/ (a SELECT moves them) or a small folder: no early facts."""
    root = tmp_path / "fresh"
    _big(root, BULK_ROWS + 3, new=2)
    with MailStore(root, fsync=False).open() as folder:
        assert folder.early is None
        assert len(folder) == BULK_ROWS + 3 and folder.recent_count() == 2
    small = tmp_path / "small"
    _big(small, 5)
    with MailStore(small, fsync=False).open() as folder:
        assert folder.early is None and len(folder) == 5


def test_a_failed_build_is_reported_to_the_next_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3: when writing the announced rows fails, the next use of the index says so, and the
    next opening builds the index again with the same UIDVALIDITY and UIDs."""
    root = tmp_path / "broken"
    count = BULK_ROWS + 1
    _big(root, count)
    release = threading.Event()
    real_insert = FolderIndex.insert_rows

    def failing_insert(self: FolderIndex, rows: list[tuple]) -> None:
        release.wait(5)
        raise OSError("disk full")

    monkeypatch.setattr(FolderIndex, "insert_rows", failing_insert)
    store = MailStore(root, fsync=False)
    folder = store.open()
    assert folder.early is not None
    uidvalidity = folder.uidvalidity
    release.set()
    with pytest.raises(StoreError, match="could not be built"):
        folder.messages()
    folder.close()
    monkeypatch.setattr(FolderIndex, "insert_rows", real_insert)
    with store.open() as again:
        assert again.uidvalidity == uidvalidity
        assert [m.uid for m in again.messages()] == list(range(1, count + 1))
