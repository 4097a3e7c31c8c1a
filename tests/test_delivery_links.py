"""Local delivery by hard link through a running server (Q1, S4).

A message for one local mailbox is queued with that delivery's trace headers first, so its
delivery links the spooled file into the Maildir instead of copying it. The spool reuses the
files of finished messages; a file a Maildir holds must never be among them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ALICE, BOB = "alice@example.test", "bob@example.test"


def body(number: int) -> bytes:
    """A distinct message, a little over 4 KiB."""
    return f"Subject: n{number}\r\n\r\n".encode() + (f"{number:06d} " * 600).encode() + b"\r\n"


def inodes(directory: Path) -> set[int]:
    """The inode numbers of the files in ``directory``."""
    return {entry.stat().st_ino for entry in os.scandir(directory) if entry.is_file()}


def test_linked_deliveries_survive_the_reuse_of_spool_files(mailmax) -> None:
    """Q1/S4: messages to alice alone (linked) and to alice and bob (copied), then more mail
    that reuses the spool's freed files: every stored message is intact, starts with exactly its
    own Return-Path, Delivered-To and our Received header, and no Maildir file is in free/."""
    with mailmax.smtp() as client:
        for number in range(60):
            recipients = [ALICE, BOB] if number % 4 == 0 else [ALICE]
            client.sendmail("joe@remote.test", recipients, body(number))
    alice = mailmax.wait_for_mail(ALICE, 60)
    mailmax.wait_for_mail(BOB, 15)
    with mailmax.smtp() as client:
        for number in range(60, 160):
            client.sendmail("ann@remote.test", [BOB], body(number))
    bob = mailmax.wait_for_mail(BOB, 115)

    def check(stored: list[bytes], mailbox: str) -> set[int]:
        numbers = set()
        for message in stored:
            match = re.search(rb"\r\nSubject: n(\d+)\r\n\r\n", message)
            assert match, message[:300]
            number = int(match.group(1))
            sender = "joe" if number < 60 else "ann"
            head = f"Return-Path: <{sender}@remote.test>\r\nDelivered-To: {mailbox}\r\n"
            assert message.startswith(head.encode() + b"Received: from "), message[:200]
            assert message.count(b"Delivered-To:") == 1 and message.count(b"Return-Path:") == 1
            assert message.endswith(b"\r\n" + body(number)), number
            numbers.add(number)
        return numbers

    assert check(alice, ALICE) == set(range(60))
    assert check(bob, BOB) == set(range(0, 60, 4)) | set(range(60, 160))
    stored = set()
    for mailbox in (ALICE, BOB):
        for sub in ("new", "cur"):
            stored |= inodes(mailmax.maildir(mailbox) / sub)
    free = mailmax.data_dir / "queue" / "free"
    assert free.is_dir()
    assert not stored & inodes(free)
