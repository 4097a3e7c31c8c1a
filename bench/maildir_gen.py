"""Generated Maildirs for the mailbox benchmarks, and hard-linked copies of them.

Every message has exactly ``size`` bytes (CRLF line ends, a small header, a body of
printable lines), its size in the file name (``,S=``) and deterministic flags: every second
message ``\\Seen``, every tenth ``\\Flagged``, every fiftieth ``\\Answered``. All files are in
``cur/`` (a mailbox that has been read before), readable by everyone (the servers may run as
other users). Copies share the files through hard links: Maildir files never change, renames
in one copy do not touch the other, and each server keeps its own index beside its own copy.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_TIME = 1_700_000_000
SUBDIRS = ("cur", "new", "tmp")


def flags_for(index: int) -> str:
    """The Maildir info letters of message ``index`` (0-based)."""
    letters = ""
    if index % 10 == 0:
        letters += "F"
    if index % 50 == 0:
        letters += "R"
    if index % 2 == 0:
        letters += "S"
    return letters


def file_name(index: int, size: int) -> str:
    """The ``cur/`` file name of message ``index``."""
    unique = f"{BASE_TIME + index}.M{index % 1_000_000:06d}P4242Q{index}.bench"
    return f"{unique},S={size}:2,{flags_for(index)}"


def message(index: int, size: int) -> bytes:
    """Message ``index``: a header and a body padded to exactly ``size`` bytes."""
    header = (
        f"Return-Path: <sender{index % 97}@example.org>\r\n"
        f"From: Sender {index % 97} <sender{index % 97}@example.org>\r\n"
        "To: Bench <bench@example.test>\r\n"
        f"Subject: benchmark message {index}\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        f"Message-ID: <{index}.bench@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    if len(header) + 2 > size:
        raise ValueError(f"messages of {size} bytes are too small for the header")
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
    room = size - len(header)
    body = line * (room // len(line))
    rest = room - len(body)
    if rest:
        body += b"x" * (rest - 2) + b"\r\n" if rest >= 2 else b"\n"
    data = header + body
    assert len(data) == size
    return data


def make_dirs(maildir: Path) -> None:
    """``cur``, ``new`` and ``tmp`` of a Maildir (and the Maildir itself)."""
    for sub in SUBDIRS:
        (maildir / sub).mkdir(parents=True, exist_ok=True)


def generate(maildir: Path, count: int, size: int) -> None:
    """Write messages ``0..count-1`` into ``maildir/cur`` (files already there are kept)."""
    make_dirs(maildir)
    cur = maildir / "cur"
    for index in range(count):
        path = cur / file_name(index, size)
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, message(index, size))
        finally:
            os.close(fd)


def link_copy(source: Path, target: Path, count: int, size: int) -> None:
    """Hard-link messages ``0..count-1`` of ``source`` into a new Maildir ``target``."""
    make_dirs(target)
    for index in range(count):
        name = file_name(index, size)
        os.link(source / "cur" / name, target / "cur" / name)
