"""Writing message files and folder directories: tmp -> fsync -> rename, unique names."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from pathlib import Path

_counter = itertools.count(1)
_HOST = (
    socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")
    or "localhost"
)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or a new entry in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(folder_dir: Path) -> None:
    """Create ``cur/new/tmp`` in ``folder_dir`` (and its parents) when missing."""
    folder_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (folder_dir / sub).mkdir(mode=0o700, exist_ok=True)


def unique_suffix() -> str:
    """A string unique to this call in this process (for temporary names)."""
    return f"{os.getpid()}-{next(_counter)}-{os.urandom(3).hex()}"


def new_base(when: float, size: int) -> str:
    """A new unique Maildir name: ``<sec>.M<usec>P<pid>Q<n>R<rand>.<host>,S=<size>``.

    The time is the message's internal date, so an index rebuilt from the names keeps it.
    """
    seconds = int(when)
    micros = min(int((when - seconds) * 1_000_000), 999_999)
    unique = f"{seconds}.M{micros:06d}P{os.getpid()}Q{next(_counter)}R{os.urandom(4).hex()}"
    return f"{unique}.{_HOST},S={size}"


def write_tmp(
    folder_dir: Path, data: bytes | Path, when: float, fsync: bool
) -> tuple[str, Path, int]:
    """Write a message into ``tmp/`` with mtime ``when``; return (base name, path, size)."""
    tmp_dir = folder_dir / "tmp"
    tmp_dir.mkdir(mode=0o700, exist_ok=True)
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    base = new_base(when, size)
    tmp = tmp_dir / base
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, Path):
                with open(data, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                out.write(data)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.utime(tmp, (when, when))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return base, tmp, size


def link_tmp(
    folder_dir: Path, source: Path, when: float, size: int, fsync: bool
) -> tuple[str, Path]:
    """Hard-link ``source`` into ``tmp/`` under a new name (copy when links fail).

    Raises FileNotFoundError when ``source`` is gone.
    """
    tmp_dir = folder_dir / "tmp"
    tmp_dir.mkdir(mode=0o700, exist_ok=True)
    base = new_base(when, size)
    tmp = tmp_dir / base
    try:
        os.link(source, tmp)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or links not allowed here
        base, tmp, _ = write_tmp(folder_dir, source, when, fsync)
    return base, tmp
