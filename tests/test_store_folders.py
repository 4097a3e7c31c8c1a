"""Folders of a Maildir++ mailbox: names on disk, create, delete, rename (S3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailmax.core.store.mailbox import (
    BadFolderName,
    FolderExists,
    FolderNotFound,
    MailStore,
    StoreError,
)
from mailmax.core.store.maildir import deliver
from mailmax.core.store.names import folder_dirname, folder_from_dirname


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    return MailStore(tmp_path / "bob", fsync=False)


@pytest.mark.parametrize(
    ("name", "dirname"),
    [
        ("Sent", ".Sent"),
        ("Archive/2024", ".Archive.2024"),
        ("v1.2", ".v1%2E2"),
        ("100%", ".100%25"),
        ("a.b/c%2Ed", ".a%2Eb.c%252Ed"),
        ("..", ".%2E%2E"),
        ("Entwürfe", ".Entwürfe"),
    ],
)
def test_folder_names_round_trip(name: str, dirname: str) -> None:
    """S3: "/" separates levels; "." and "%" inside a level are escaped on disk."""
    assert folder_dirname(name) == dirname
    assert folder_from_dirname(dirname) == name


@pytest.mark.parametrize("bad", ["", "/Sent", "Sent/", "a//b", "tab\there", "x" * 300])
def test_bad_folder_names(store: MailStore, bad: str) -> None:
    """S3: unusable names are refused with a clear error, nothing is created."""
    with pytest.raises(BadFolderName):
        store.create_folder(bad)
    assert store.folders() == ["INBOX"]


def test_create_list_delete(store: MailStore) -> None:
    """S3: folders are created as Maildir++ directories and listed in order, INBOX first."""
    for name in ("Sent", "Archive/2024", "v1.2"):
        store.create_folder(name)
    assert store.folders() == ["INBOX", "Archive/2024", "Sent", "v1.2"]
    assert (store.root / ".Archive.2024" / "maildirfolder").exists()
    assert all((store.root / ".Sent" / sub).is_dir() for sub in ("cur", "new", "tmp"))
    with pytest.raises(FolderExists):
        store.create_folder("Sent")
    with pytest.raises(FolderExists):
        store.create_folder("inbox")
    with store.open("Sent") as sent:
        sent.append(b"Subject: s\r\n\r\nx\r\n")
    store.delete_folder("Sent")
    assert store.folders() == ["INBOX", "Archive/2024", "v1.2"]
    with pytest.raises(FolderNotFound):
        store.open("Sent")
    with pytest.raises(FolderNotFound):
        store.delete_folder("Sent")
    with pytest.raises(StoreError):
        store.delete_folder("INBOX")
    assert not [p for p in store.root.iterdir() if p.name.startswith("mailmax-")]


def test_recreated_folder_gets_new_uidvalidity(store: MailStore) -> None:
    """S3: a folder deleted and created again never reuses its UIDVALIDITY."""
    store.create_folder("Work")
    with store.open("Work") as work:
        first = work.uidvalidity
    store.delete_folder("Work")
    store.create_folder("Work")
    with store.open("Work") as work:
        assert work.uidvalidity > first


def test_delete_parent_keeps_children(store: MailStore) -> None:
    """S3: deleting a folder leaves its subfolders (the parent becomes a mere level)."""
    store.create_folder("A")
    store.create_folder("A/B")
    store.delete_folder("A")
    assert store.folders() == ["INBOX", "A/B"]


def test_rename_moves_subfolders_and_keeps_uids(store: MailStore) -> None:
    """S3: renaming a folder renames its subfolders; messages keep their UIDs."""
    store.create_folder("Projects")
    store.create_folder("Projects/2024")
    with store.open("Projects/2024") as folder:
        uid = folder.append(b"Subject: p\r\n\r\nx\r\n")
        uidvalidity = folder.uidvalidity
    store.rename_folder("Projects", "Old/Projects")
    assert store.folders() == ["INBOX", "Old/Projects", "Old/Projects/2024"]
    with store.open("Old/Projects/2024") as folder:
        assert folder.uidvalidity == uidvalidity
        assert folder.uids() == (uid,)
    with pytest.raises(FolderNotFound):
        store.rename_folder("Nope", "Other")
    store.create_folder("Taken")
    with pytest.raises(FolderExists):
        store.rename_folder("Taken", "Old/Projects")
    with pytest.raises(BadFolderName):
        store.rename_folder("Taken", "Taken/Sub")


def test_rename_inbox_moves_messages(store: MailStore) -> None:
    """S3: renaming INBOX moves its messages to the new folder and leaves INBOX empty."""
    for i in range(3):
        deliver(
            store.root, "INBOX", b"Subject: %d\r\n\r\n" % i, f"{time.time_ns():x}-{i}", fsync=False
        )
    store.rename_folder("INBOX", "Old mail")
    with store.open() as inbox:
        assert len(inbox) == 0
    with store.open("Old mail") as old:
        assert len(old) == 3


def test_usage_bytes(store: MailStore) -> None:
    """A5: the store adds up the sizes of the messages of every folder."""
    store.create_folder("Sent")
    with store.open() as inbox, store.open("Sent") as sent:
        inbox.append(b"x" * 100)
        sent.append(b"y" * 50)
    assert store.usage_bytes() == 150


def test_delivery_into_a_folder_made_by_the_store(store: MailStore) -> None:
    """S3: the delivery code and the store agree on where a folder lives."""
    store.create_folder("Archive/2024")
    deliver(store.root, "Archive/2024", b"Subject: a\r\n\r\n", "0001", fsync=False)
    with store.open("Archive/2024") as folder:
        assert len(folder) == 1
