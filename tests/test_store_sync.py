"""The index keeps up with the Maildir cheaply: a directory changed by someone else is
rescanned once, not for seconds after; a big folder's index is built in one bulk pass (S3).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from mailmax.core.store.index import INDEX_NAME
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.maildir import deliver
from mailmax.core.store.scan import BULK_ROWS, COARSE_MARGIN_NS, FINE_MARGIN_NS, SECONDARY_INDEXES

MSG = b"From: a@example.test\r\nSubject: sync\r\n\r\nbody\r\n"


def test_outside_change_is_rescanned_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3: after a delivery the next refresh rescans new/ once; once the directory's mtime is
    safely in the past (a tick of the file system's clock) refreshes cost no directory scan."""
    store = MailStore(tmp_path / "alice", fsync=False)
    deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-0", fsync=False)
    scans: list[object] = []
    real_scandir = os.scandir

    def counting_scandir(path: object) -> object:
        scans.append(path)
        return real_scandir(path)  # type: ignore[arg-type]

    with store.open() as folder:
        deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-1", fsync=False)
        coarse = os.stat(store.root / "new").st_mtime_ns % 1_000_000_000 == 0
        time.sleep(((COARSE_MARGIN_NS if coarse else FINE_MARGIN_NS) + 50_000_000) / 1e9)
        monkeypatch.setattr(os, "scandir", counting_scandir)
        assert folder.refresh().added == [2]
        assert scans, "the delivery must be found by a rescan"
        scans.clear()
        for _ in range(3):
            assert not folder.refresh()
        assert scans == []


def test_big_folder_index_is_built_in_one_pass(tmp_path: Path) -> None:
    """S3: a folder of more than BULK_ROWS messages gets UIDs in arrival order, flags from the
    file names, and every secondary index of the schema."""
    root = tmp_path / "big"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    count = BULK_ROWS + 10
    for i in range(count):
        name = f"{1_700_000_000 + count - i}.M0P1Q{i}.host,S={len(MSG)}:2,{'S' if i % 2 else ''}"
        (root / "cur" / name).write_bytes(MSG)
    with MailStore(root, fsync=False).open() as folder:
        infos = folder.messages()
        assert len(infos) == count
        assert [m.internaldate for m in infos] == sorted(m.internaldate for m in infos)
        assert infos[0].filename.endswith(f"Q{count - 1}.host,S={len(MSG)}:2,S")  # the oldest
        assert infos[-1].filename.endswith(f"Q0.host,S={len(MSG)}:2,")
        assert folder.unseen() == count // 2
    with sqlite3.connect(root / INDEX_NAME) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {name for name, _ in SECONDARY_INDEXES} <= names
