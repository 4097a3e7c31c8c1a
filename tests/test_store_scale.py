"""Large folders: opening an indexed folder reads no messages; a cold open is linear (S3)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailmax.core.store.index import INDEX_NAME
from mailmax.core.store.mailbox import MailStore

BODY = b"Subject: bulk\r\n\r\n" + b"x" * 200 + b"\r\n"


def _fill(root: Path, count: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        flags = "S" if i % 3 else ""
        name = f"{1_700_000_000 + i}.M{i % 1_000_000:06d}P1Q{i}.host,S={len(BODY)}:2,{flags}"
        (root / "cur" / name).write_bytes(BODY)
    for sub in ("cur", "new"):  # settled directories (a fresh mtime is always rescanned)
        os.utime(root / sub, ns=(1, 1_000_000_000))


def _drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(root / INDEX_NAME) + suffix).unlink(missing_ok=True)


def _best(action: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def test_indexed_open_reads_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3: SELECT-style facts of an indexed folder come from the index, not the Maildir."""
    root = tmp_path / "big"
    _fill(root, 3000)
    store = MailStore(root, fsync=False)
    with store.open() as folder:
        assert len(folder) == 3000
    scans: list[object] = []
    real_scandir = os.scandir

    def counting_scandir(path: object) -> object:
        scans.append(path)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", counting_scandir)
    with store.open() as folder:
        facts = (len(folder), folder.unseen(), folder.recent_count(), folder.first_unseen())
        assert facts == (3000, 1000, 0, 1)
        assert folder.refresh().added == []
    assert scans == []


def test_cold_open_is_linear_and_indexed_open_is_flat(tmp_path: Path) -> None:
    """S3: building the index is linear in the folder size; reopening barely depends on it."""
    small, large = tmp_path / "small", tmp_path / "large"
    _fill(small, 1000)
    _fill(large, 4000)
    stores = {root: MailStore(root, fsync=False) for root in (small, large)}

    def cold(root: Path) -> Callable[[], None]:
        def run() -> None:
            _drop_index(root)
            stores[root].open().close()

        return run

    def warm(root: Path) -> Callable[[], None]:
        def run() -> None:
            with stores[root].open() as folder:
                len(folder)
                folder.unseen()

        return run

    cold_small, cold_large = _best(cold(small), 3), _best(cold(large), 3)
    assert cold_large / cold_small < 10, (cold_small, cold_large)  # 4x the mail, not 16x time
    warm_large = _best(warm(large), 5)
    assert warm_large < cold_large / 5, (warm_large, cold_large)  # no rescan, no reading
    with stores[large].open() as folder:
        infos = folder.messages()
        assert [m.uid for m in infos[:3]] == [1, 2, 3]
        assert sum(1 for m in infos if "\\Seen" in m.flags) == 2666


def test_refresh_reads_only_what_changed(tmp_path: Path) -> None:
    """S3: picking up one new message and one flag change in a large folder costs the same
    whatever its size (no walk over every row of the index), also after own changes."""
    root = tmp_path / "big"
    _fill(root, 3000)
    store = MailStore(root, fsync=False)
    with store.open() as folder, store.open() as other:
        assert len(folder.messages()) == 3000
        folder.set_flags([1], ["\\Flagged"], "add")  # an own change to leave out
        uid = other.append(BODY)
        other.set_flags([2], ["\\Answered"], "add")
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        folder._index.conn.set_progress_handler(count, 100)
        changes = folder.refresh()
        folder._index.conn.set_progress_handler(None, 100)
        assert changes.added == [uid]
        assert changes.flags == {2: frozenset({"\\Answered", "\\Seen"})}
        assert len(folder.messages()) == 3001
        # a walk over the 3,000 rows takes about 150 calls (of 100 SQLite steps each);
        # reading the changed rows through the modseq index, none or one
        assert steps[0] < 15, steps[0]
