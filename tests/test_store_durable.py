"""Group syncs of the mail file system and folders kept open between commands (S2, S3)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailmax.core.store.durable import GroupSync, group_for, store_sync_mode
from mailmax.core.store.errors import FolderNotFound
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.openfolders import OpenFolders


def test_concurrent_syncs_all_return_and_share_flushes(tmp_path: Path) -> None:
    """S2: sixteen threads waiting for durability at once are all served; none waits for
    more syncs than callers."""
    group = GroupSync()
    done: list[int] = []
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            (tmp_path / f"m{number}").write_bytes(b"x" * 4096)
            group.sync(tmp_path)
            done.append(number)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(done) == list(range(16))
    assert 1 <= group._finished <= 16


def test_a_failed_sync_is_reported_to_its_callers(tmp_path: Path) -> None:
    """S2: a sync that cannot be done raises, so no OK is given for it."""
    with pytest.raises(OSError, match="cannot make the mailbox durable"):
        GroupSync().sync(tmp_path / "missing")


def test_one_group_per_file_system_and_sync_modes(tmp_path: Path) -> None:
    """S2: one shared group per device; ``[spool] sync = "files"`` makes the store fsync each
    file; an unknown mode is refused."""
    (tmp_path / "a").mkdir()
    assert group_for(tmp_path) is group_for(tmp_path / "a")
    assert store_sync_mode("files") == "files"
    assert store_sync_mode("filesystem") in ("filesystem", "files")
    assert MailStore(tmp_path, sync="files").sync_mode == "files"
    assert MailStore(tmp_path, fsync=False).sync_mode == "none"
    with pytest.raises(ValueError, match="unknown sync mode"):
        MailStore(tmp_path, sync="sometimes")


@pytest.mark.parametrize("mode", ["filesystem", "files"])
def test_appends_through_a_kept_folder(tmp_path: Path, mode: str) -> None:
    """S3: a kept folder is used again while its name leads to the same index; after a
    rename it is not, and a closed set closes what is given back."""
    store = MailStore(tmp_path / "mail", sync=store_sync_mode(mode))
    store.create_folder("Sent")
    kept = OpenFolders(store, limit=2)
    with kept.use("Sent") as folder:
        first = folder.append(b"Subject: one\r\n\r\nbody\r\n")
    with kept.use("Sent") as again:
        assert again is folder
        second = again.append(b"Subject: two\r\n\r\nbody\r\n", ["\\Seen"])
    assert second == first + 1
    store.rename_folder("Sent", "Old")
    with pytest.raises(FolderNotFound), kept.use("Sent"):
        pass
    with store.open("Old") as old:
        assert [m.uid for m in old.messages()] == [first, second]
        assert old.get(second).flags == frozenset({"\\Seen"})
    for name in ("A", "B", "C"):
        store.create_folder(name)
        with kept.use(name):
            pass
    assert len(kept._kept) == 2
    with kept.use("C") as using:
        kept.close()
    assert using._index._closed
    assert kept._kept == {}


def test_kept_folders_closed_for_idling_are_opened_again(tmp_path: Path) -> None:
    """S3: closing the kept folders before IDLE keeps the set usable; a final close does not."""
    store = MailStore(tmp_path / "mail", sync="files")
    kept = OpenFolders(store)
    with kept.use("INBOX") as folder:
        folder.append(b"Subject: one\r\n\r\nbody\r\n")
    kept.close(final=False)
    assert folder._index._closed
    with kept.use("INBOX") as again:
        assert again is not folder
        again.append(b"Subject: two\r\n\r\nbody\r\n")
    assert len(kept._kept) == 1
    kept.close()
    assert again._index._closed
