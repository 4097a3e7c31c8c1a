"""The per-folder index: stable UIDs, rebuilds, concurrent deliveries, flags (S2, S3, A5)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mailmax.core.store.index import INDEX_NAME
from mailmax.core.store.mailbox import MailStore, MessageGone, UidValidityChanged
from mailmax.core.store.maildir import deliver

MSG = b"From: a@example.test\r\nSubject: test\r\n\r\nbody\r\n"


def _deliver(root: Path, count: int, start: int = 0, folder: str = "INBOX") -> list[Path]:
    return [
        deliver(root, folder, MSG + b"%d\r\n" % i, f"{time.time_ns():x}-{i}", fsync=False)
        for i in range(start, start + count)
    ]


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "alice", fsync=False)


def test_uids_stable_across_reopen(store: MailStore) -> None:
    """S3: UIDs and UIDVALIDITY survive closing and reopening (a restart)."""
    _deliver(store.root, 3)
    with store.open() as folder:
        first = [(m.uid, m.path.name.split(":")[0]) for m in folder.messages()]
        uidvalidity = folder.uidvalidity
    assert [uid for uid, _ in first] == [1, 2, 3]
    _deliver(store.root, 1, start=3)
    with MailStore(store.root).open() as again:
        assert again.uidvalidity == uidvalidity
        assert [(m.uid, m.path.name.split(":")[0]) for m in again.messages()][:3] == first
        assert again.uids() == (1, 2, 3, 4)
        assert again.uidnext == 5


def test_arrival_order_and_sizes(store: MailStore) -> None:
    """S3: UIDs follow arrival order; sizes are the stored byte counts."""
    paths = _deliver(store.root, 5)
    with store.open() as folder:
        infos = folder.messages()
        assert [m.path.name.split(":")[0] for m in infos] == [p.name for p in paths]
        assert [m.size for m in infos] == [p.stat().st_size for p in paths]
        assert all(m.recent for m in infos)
        assert folder.read(3) == paths[2].read_bytes()


def test_rebuild_after_index_deleted_changes_uidvalidity(store: MailStore) -> None:
    """S3: a missing index is rebuilt from the Maildir with a new, larger UIDVALIDITY."""
    _deliver(store.root, 4)
    with store.open() as folder:
        old = folder.uidvalidity
        folder.set_flags([2], ["\\Seen"])
    for suffix in ("", "-wal", "-shm"):
        Path(str(store.root / INDEX_NAME) + suffix).unlink(missing_ok=True)
    with store.open() as folder:
        assert folder.uidvalidity > old
        assert len(folder) == 4
        assert [m.flags for m in folder.messages()].count(frozenset({"\\Seen"})) == 1


def test_damaged_index_is_rebuilt(store: MailStore) -> None:
    """S3: garbage in the index file does not lose mail: the index is rebuilt."""
    _deliver(store.root, 3)
    with store.open() as folder:
        old = folder.uidvalidity
    for suffix in ("-wal", "-shm"):
        Path(str(store.root / INDEX_NAME) + suffix).unlink(missing_ok=True)
    (store.root / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    with store.open() as folder:
        assert len(folder) == 3
        assert folder.uidvalidity != old
    assert (store.root / (INDEX_NAME + ".damaged")).exists()


def test_readable_old_index_keeps_uids(store: MailStore) -> None:
    """S3: an index from another schema version is rebuilt keeping UIDVALIDITY and UIDs."""
    _deliver(store.root, 3)
    with store.open() as folder:
        folder.expunge([1])
        folder.set_flags([3], ["Work"], "add")
        uidvalidity = folder.uidvalidity
    with sqlite3.connect(store.root / INDEX_NAME) as conn:
        conn.execute("UPDATE state SET version = 99")
    with store.open() as folder:
        assert folder.uidvalidity == uidvalidity
        assert folder.uids() == (2, 3)
        assert "Work" in folder.get(3).flags
        assert folder.uidnext == 4


def test_delivery_appears_on_refresh(store: MailStore) -> None:
    """S3: a message delivered while a session is open shows up on refresh, with a new UID."""
    _deliver(store.root, 2)
    with store.open() as folder:
        assert folder.refresh().added == []
        _deliver(store.root, 1, start=2)
        changes = folder.refresh()
        assert changes.added == [3]
        assert len(folder) == 3
        assert folder.refresh().added == []


def test_concurrent_delivery_thread(store: MailStore) -> None:
    """S3: deliveries from another thread during refreshes are all indexed exactly once."""
    store.open().close()
    seen: list[int] = []

    def writer() -> None:
        _deliver(store.root, 200)

    thread = threading.Thread(target=writer)
    with store.open() as folder:
        thread.start()
        while thread.is_alive():
            seen += folder.refresh().added
        thread.join()
        time.sleep(0.01)
        seen += folder.refresh().added
        assert sorted(seen) == list(range(1, 201))
        assert len(folder) == 200
    with store.open() as again:
        assert again.uids() == tuple(range(1, 201))


def test_two_sessions_see_each_others_changes(store: MailStore) -> None:
    """S3: flags and expunges by one session are reported to the other on refresh."""
    _deliver(store.root, 3)
    one, two = store.open(), store.open()
    try:
        two.messages()  # the view is loaded
        one.set_flags([1, 2], ["\\Seen", "$Important"], "add")
        changes = two.refresh()
        assert changes.flags == {
            1: frozenset({"\\Seen", "$Important"}),
            2: frozenset({"\\Seen", "$Important"}),
        }
        assert one.refresh().flags == {}  # its own changes are not echoed back
        one.set_flags([2], ["\\Deleted"], "add")
        assert one.expunge() == [2]
        assert one.uids() == (1, 3)
        assert two.uids() == (1, 2, 3)  # sequence numbers hold until refresh
        changes = two.refresh()
        assert changes.expunged == [2]
        assert two.uids() == (1, 3)
        assert one.refresh().expunged == []
    finally:
        one.close()
        two.close()


def test_lazy_view_reports_flags_changed_before_it_was_read(store: MailStore) -> None:
    """S3: flags another session changed after this one opened the folder, but before its
    view was read, are still reported on refresh (the view already shows them, the client
    was never told); changed and changed back after the view was read, nothing is."""
    _deliver(store.root, 3)
    one, two = store.open(), store.open()
    try:
        one.set_flags([1, 3], ["\\Seen"], "add")
        assert "\\Seen" in two.messages()[0].flags  # the view is read now
        assert two.refresh().flags == {1: frozenset({"\\Seen"}), 3: frozenset({"\\Seen"})}
        assert two.refresh().flags == {}
        one.set_flags([2], ["$Later"], "add")
        one.set_flags([2], ["$Later"], "remove")
        assert two.refresh().flags == {}
    finally:
        one.close()
        two.close()


def test_lazy_view_keeps_unreported_expunge(store: MailStore) -> None:
    """S3: a view loaded after another session expunged still holds the place until refresh."""
    _deliver(store.root, 3)
    one, two = store.open(), store.open()
    try:
        one.expunge([2])
        assert len(two.messages()) == 3
        with pytest.raises(MessageGone):
            two.read(2)
        assert two.refresh().expunged == [2]
        assert len(two) == 2
    finally:
        one.close()
        two.close()


def test_flags_map_to_maildir_info(store: MailStore) -> None:
    """S3: system flags are the Maildir info letters; keywords live in the index."""
    _deliver(store.root, 1)
    with store.open() as folder:
        result = folder.set_flags(
            [1], ["\\seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "Junk"]
        )
        assert result[1] == frozenset(
            {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "Junk"}
        )
        path = folder.get(1).path
        assert path.parent.name == "cur"
        assert path.name.endswith(":2,DFRST")
        folder.set_flags([1], ["\\Deleted", "\\Draft"], "remove")
        assert folder.get(1).path.name.endswith(":2,FRS")
        assert "Junk" in folder.keywords()
        assert folder.set_flags([1], ["$Forwarded"], "add")[1] >= {"$Forwarded"}
        assert folder.get(1).path.name.endswith(":2,FPRS")


def test_flags_changed_by_another_tool(store: MailStore) -> None:
    """S3: a file renamed by another program (mutt, a script) updates the flags."""
    _deliver(store.root, 1)
    with store.open() as folder:
        folder.claim_recent()
        path = folder.get(1).path
        os.rename(path, path.with_name(path.name.split(":")[0] + ":2,S"))
        time.sleep(0.01)
        assert folder.refresh().flags == {1: frozenset({"\\Seen"})}
        assert folder.read(1).startswith(b"From:")


def test_open_file_follows_rename_by_another_session(store: MailStore) -> None:
    """S2: a session whose view is stale still reads a message another session re-flagged."""
    _deliver(store.root, 1)
    one, two = store.open(), store.open()
    try:
        two.messages()
        one.set_flags([1], ["\\Seen"])
        assert two.read(1).startswith(b"From:")
    finally:
        one.close()
        two.close()


def test_append_copy_expunge(store: MailStore) -> None:
    """S3: append keeps bytes, flags and date; copy keeps flags; expunge removes \\Deleted."""
    store.create_folder("Archive")
    with store.open() as inbox, store.open("Archive") as archive:
        uid = inbox.append(b"Subject: x\r\n\r\n.dot\r\n", ["\\Seen", "Todo"], internaldate=1.7e9)
        assert inbox.refresh().added == [uid]
        info = inbox.get(uid)
        assert inbox.read(uid) == b"Subject: x\r\n\r\n.dot\r\n"
        assert info.flags == frozenset({"\\Seen", "Todo"})
        assert info.internaldate == pytest.approx(1.7e9)
        assert int(info.path.stat().st_mtime) == 1_700_000_000
        second = inbox.append(MSG)
        assert inbox.copy([second], archive) == []  # not in the view before refresh
        assert inbox.refresh().added == [second]
        pairs = inbox.copy([uid, second, 999], archive)
        assert pairs == [(uid, 1), (second, 2)]
        assert archive.refresh().added == [1, 2]
        assert archive.get(1).flags == frozenset({"\\Seen", "Todo"})
        assert archive.read(2) == MSG
        inbox.set_flags([uid], ["\\Deleted"], "add")
        assert inbox.expunge() == [uid]
        assert inbox.uids() == (second,)
        assert archive.read(1) == b"Subject: x\r\n\r\n.dot\r\n"  # the copy is independent
        assert inbox.expunge([second]) == [second]
        assert len(inbox) == 0
    assert not list((store.root / "tmp").iterdir())


def test_append_from_file_and_rebuild_keeps_date(store: MailStore, tmp_path: Path) -> None:
    """S3: a message appended from a file keeps its internal date across an index rebuild."""
    source = tmp_path / "msg.eml"
    source.write_bytes(MSG * 100)
    with store.open() as folder:
        folder.append(source, internaldate=1_600_000_000.25)
    (store.root / INDEX_NAME).unlink()
    with store.open() as folder:
        info = folder.messages()[0]
        assert info.internaldate == pytest.approx(1_600_000_000.25, abs=1e-5)
        assert info.size == len(MSG) * 100


def test_claim_recent_only_once(store: MailStore) -> None:
    """S3: \\Recent goes to one session only: the first to claim moves new/ to cur/."""
    _deliver(store.root, 3)
    one, two = store.open(), store.open()
    try:
        assert one.recent_count() == 3
        assert one.claim_recent() == [1, 2, 3]
        assert two.claim_recent() == []
        assert not list((store.root / "new").iterdir())
        assert one.unseen() == 3
        one.set_flags([2], ["\\Seen"])
        assert one.first_unseen() == 1
        assert one.unseen() == 2
    finally:
        one.close()
        two.close()


def test_index_rebuilt_under_session_is_reported(store: MailStore) -> None:
    """S3: when the index is rebuilt with new UIDs, an open session learns UIDVALIDITY changed."""
    _deliver(store.root, 2)
    folder = store.open()
    try:
        folder.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(store.root / INDEX_NAME) + suffix).unlink(missing_ok=True)
        store.open().close()
        folder._index = type(folder._index)(store.root, store.root, fsync=False)
        with pytest.raises(UidValidityChanged):
            folder.refresh()
    finally:
        folder.close()


def test_bad_flags_rejected(store: MailStore) -> None:
    """S3: unknown system flags and keywords with bad characters are refused clearly."""
    _deliver(store.root, 1)
    with store.open() as folder:
        with pytest.raises(ValueError, match="unknown system flag"):
            folder.set_flags([1], ["\\Bogus"])
        with pytest.raises(ValueError, match="keyword"):
            folder.set_flags([1], ["two words"])
        assert folder.set_flags([1], ["\\Recent"]) == {1: frozenset()}


def test_position_of_uid(store: MailStore) -> None:
    """S3: the sequence number of a UID, before and after the view is loaded."""
    _deliver(store.root, 6)
    one, two = store.open(), store.open()
    try:
        one.expunge([2])
        assert [two.position(u) for u in (1, 2, 3, 6, 7, 0)] == [1, 2, 3, 6, None, None]
        two.messages()
        assert [two.position(u) for u in (1, 2, 3, 6, 7)] == [1, 2, 3, 6, None]
        two.refresh()
        assert [two.position(u) for u in (1, 2, 3, 6)] == [1, None, 2, 5]
        assert one.position(2) is None and one.position(5) == 4
    finally:
        one.close()
        two.close()
