"""The index keeps up with the Maildir cheaply: a directory changed by someone else is
rescanned once, not for seconds after; a big folder's index is built in one bulk pass (S3).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from mailmax.core.store.index import INDEX_NAME, flags_of
from mailmax.core.store.mailbox import MailStore
from mailmax.core.store.maildir import deliver
from mailmax.core.store.names import base_of, parse_filename
from mailmax.core.store.scan import (
    BASE_INDEX,
    BULK_ROWS,
    COARSE_MARGIN_NS,
    FINE_MARGIN_NS,
    SECONDARY_INDEXES,
)

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


def _expected_rows(root: Path) -> list[tuple[str, str, int, float, str]]:
    """What every file of ``root`` should give, parsed one by one: (base, file, size, date,
    letters) in arrival order; a base in both directories counts in new/ only."""
    found: dict[str, tuple[float, str, str, int, str]] = {}
    for sub in ("cur", "new"):
        for entry in os.scandir(root / sub):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            parsed = parse_filename(entry.name)
            size = parsed.size if parsed.size is not None else entry.stat().st_size
            when = parsed.time if parsed.time is not None else entry.stat().st_mtime
            found[base_of(entry.name)] = (
                when,
                base_of(entry.name),
                f"{sub}/{entry.name}",
                size,
                parsed.letters,
            )
    return [
        (base, name, size, when, letters)
        for when, base, name, size, letters in sorted(found.values())
    ]


def test_first_build_matches_file_by_file_parsing(tmp_path: Path) -> None:
    """S3: the first build of an index (the listing parsed in one pass) gives every file the
    UID, size, date and flags that parsing its name alone gives, for unusual names too."""
    root = tmp_path / "mixed"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    names = {
        "cur": [
            "1700000005.M000123P1Q1.host,S=5:2,FS",
            "1700000001.M7P1Q2.host,S=7:2,",
            "1700000003.P1Q3.host,S=9",  # no microseconds, no info
            f"{0x5F5E1000 * 1_000_000 + 77:014x}abcd-bob@example.test,S=11:2,RS",  # queue id
            "1700000002.M1P1Q4.host:2,S",  # no size: from stat
            "oddname:2,T",  # no time, no size
            "1700000004.M5P1Q5.host,S=3:1,x",  # an info part of another version
            "1700000006.M5P1Q6.host,S=4:2,S:extra",
            "12.M1P1Q7.host,S=2:2,S",  # a time nobody believes
            "1700000007.M1P1Q8.both,S=1:2,S",  # also in new/: new/ wins
            ".hidden,S=1:2,S",
        ],
        "new": ["1700000008.M1P1Q9.host,S=6", "1700000007.M1P1Q8.both,S=1"],
    }
    for sub, files in names.items():
        for name in files:
            (root / sub / name).write_bytes(MSG)
    (root / "cur" / "1700000009.M1P1Q10.dir,S=1:2,").mkdir()  # not a message
    with MailStore(root, fsync=False).open() as folder:
        got = [
            (base_of(m.filename.split("/", 1)[1]), m.filename, m.size, m.internaldate, m.flags)
            for m in folder.messages()
        ]
        assert [m.uid for m in folder.messages()] == list(range(1, len(got) + 1))
    expected = _expected_rows(root)
    assert [row[:4] for row in got] == [row[:4] for row in expected]
    assert [row[4] for row in got] == [flags_of(row[4], "") for row in expected]


def _as_version_2(path: Path) -> None:
    """Rewrite an index as schema version 2 left it: ``base`` a UNIQUE column."""
    columns = (
        "uid INTEGER PRIMARY KEY, base TEXT NOT NULL UNIQUE, filename TEXT NOT NULL, "
        "in_new INTEGER NOT NULL, size INTEGER NOT NULL, internaldate REAL NOT NULL, "
        "letters TEXT NOT NULL, keywords TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL"
    )
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE old_messages ({columns})")
        conn.execute("INSERT INTO old_messages SELECT * FROM messages")
        conn.execute("DROP TABLE messages")
        conn.execute("ALTER TABLE old_messages RENAME TO messages")
        for name, definition in SECONDARY_INDEXES:
            conn.execute(f"CREATE INDEX {name} {definition}")
        conn.execute("UPDATE state SET version = 2")


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }


def test_index_of_version_2_is_upgraded_in_place(tmp_path: Path) -> None:
    """S3: an index whose ``base`` is a UNIQUE column (version 2) keeps its UIDVALIDITY and
    UIDs; a big first build into it keeps that constraint and adds no second unique index."""
    store = MailStore(tmp_path / "bob", fsync=False)
    for i in range(3):
        deliver(store.root, "INBOX", MSG, f"{time.time_ns():x}-{i}", fsync=False)
    with store.open() as folder:
        folder.expunge([2])
        uidvalidity = folder.uidvalidity
    _as_version_2(store.root / INDEX_NAME)
    with store.open() as folder:
        assert (folder.uidvalidity, folder.uids()) == (uidvalidity, (1, 3))
        assert folder.append(MSG) == 4
    assert not (store.root / (INDEX_NAME + ".damaged")).exists()
    with sqlite3.connect(store.root / INDEX_NAME) as conn:
        assert conn.execute("SELECT version FROM state").fetchone()[0] == 3

    empty = MailStore(tmp_path / "carol", fsync=False)
    with empty.open() as folder:
        assert len(folder) == 0
    _as_version_2(empty.root / INDEX_NAME)
    count = BULK_ROWS + 5
    for i in range(count):
        (empty.root / "cur" / f"{1_700_000_000 + i}.M1P1Q{i}.host,S={len(MSG)}:2,").write_bytes(MSG)
    with empty.open() as folder:
        assert folder.uids() == tuple(range(1, count + 1))
    names = _indexes(empty.root / INDEX_NAME)
    assert BASE_INDEX not in names and any(n.startswith("sqlite_autoindex_messages") for n in names)
    with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(empty.root / INDEX_NAME) as conn:
        conn.execute(
            "INSERT INTO messages SELECT uid + 1000000, base, filename, in_new, size, "
            "internaldate, letters, keywords, modseq FROM messages LIMIT 1"
        )


def test_new_index_has_a_unique_base_index(tmp_path: Path) -> None:
    """S3: a new index keeps the unique names in a unique index, also after a big first build."""
    root = tmp_path / "dave"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i in range(BULK_ROWS + 5):
        (root / "cur" / f"{1_700_000_000 + i}.M1P1Q{i}.host,S={len(MSG)}").write_bytes(MSG)
    with MailStore(root, fsync=False).open() as folder:
        assert len(folder) == BULK_ROWS + 5
    assert BASE_INDEX in _indexes(root / INDEX_NAME)
    with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(root / INDEX_NAME) as conn:
        conn.execute(
            "INSERT INTO messages SELECT uid + 1000000, base, filename, in_new, size, "
            "internaldate, letters, keywords, modseq FROM messages LIMIT 1"
        )
