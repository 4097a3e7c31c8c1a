"""Maildir++ mailboxes: atomic, idempotent delivery and disk usage.

A mailbox root holds ``cur/``, ``new/`` and ``tmp/`` (the INBOX); each folder is a directory
``.Name`` (levels joined by dots: ``.Archive.2024``) with its own ``cur/new/tmp`` and an empty
``maildirfolder`` file. Folder names are the IMAP names the mailbox store uses, ``/`` between
levels (``"INBOX"``, ``"Junk"``, ``"Archive/2024"``); :mod:`mailmax.core.store.names` maps them
to directories, so what is delivered here is what POP3 and IMAP see.

Delivered files are named ``<unique>.<host>,S=<size>``: ``unique`` is chosen by the caller (the
queue uses ``<queue id>-<recipient index>``, which starts with the time), so delivering the same
``unique`` twice finds the first copy instead of writing a second one.

A queued message that already is exactly what a mailbox must hold (the queue wrote the
mailbox's trace headers when it accepted it) is hard-linked into ``new/`` instead of copied
(``link=True``): no second copy of its bytes, no second fsync of them. Where a link is not
possible (another file system) it is copied.

Disk usage is cached in the Maildir++ ``maildirsize`` file (first line the quota, then one
``<bytes> <count>`` line per change); it is recounted when it is older than 15 minutes, longer
than 5120 bytes, or before a delivery is refused for being over quota.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mailmax.core.store import names
from mailmax.core.store.errors import BadFolderName

#: Folder name meaning the mailbox root.
INBOX = "INBOX"
_UNIQUE_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")
_SIZE_RE = re.compile(r",S=(\d+)")
_SUBDIRS = ("cur", "new", "tmp")
QUOTA_FILE = "maildirsize"
_QUOTA_MAX_AGE = 15 * 60
_QUOTA_MAX_SIZE = 5120
_fdatasync = getattr(os, "fdatasync", os.fsync)


class MaildirError(OSError):
    """A Maildir operation failed."""


class InvalidFolder(MaildirError, ValueError):
    """A folder name that cannot be used (empty parts, ``/``, control characters...)."""

    def __init__(self, folder: str, why: str) -> None:
        super().__init__(errno.EINVAL, f"invalid folder name {folder!r}: {why}")
        self.folder = folder


class OverQuota(MaildirError):
    """The message does not fit in the mailbox's disk limit."""

    def __init__(self, usage: int, size: int, quota: int) -> None:
        super().__init__(errno.EDQUOT, f"mailbox full: {usage} + {size} bytes > {quota} bytes")
        self.usage = usage
        self.size = size
        self.quota = quota


# ---------------------------------------------------------------------- folders
def folder_path(root: Path | str, folder: str = INBOX) -> Path:
    """The directory of ``folder`` in the mailbox at ``root`` (validates the name)."""
    if not isinstance(folder, str):
        raise InvalidFolder(repr(folder), "a folder name is a string")
    if names.is_inbox(folder):
        return Path(root)
    try:
        return Path(root) / names.folder_dirname(folder)
    except BadFolderName as exc:
        raise InvalidFolder(folder, str(exc)) from None


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, fsync: bool) -> None:
    """``mkdir -p`` that fsyncs the parent of every directory it creates."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        if fsync:
            _fsync_dir(directory.parent)


def _complete(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in _SUBDIRS)


def ensure_maildir(root: Path, folder: str = INBOX, *, fsync: bool = True) -> Path:
    """Create ``folder`` (with ``cur/new/tmp``) under ``root`` if needed; return its path.

    Creating a folder also makes ``root`` a Maildir (Maildir++ folders live inside one) and
    writes the folder's ``maildirfolder`` marker.
    """
    root = Path(root)
    path = folder_path(root, folder)
    if _complete(path):
        return path
    for sub in _SUBDIRS:
        _make_dirs(root / sub, fsync)
    if path != root:
        for sub in _SUBDIRS:
            _make_dirs(path / sub, fsync)
        marker = path / "maildirfolder"
        if not marker.exists():
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            if fsync:
                _fsync_dir(path)
    return path


# ---------------------------------------------------------------------- delivery
#: Folder directories seen complete (cur/new/tmp) by this process: no checks before each write.
_complete_dirs: set[str] = set()
#: The directory of each (Maildir root, folder name) seen complete: no name check either.
_complete_folders: dict[tuple[str, str], str] = {}
_MAX_KNOWN_FOLDERS = 100_000
#: Messages up to this size are read and written in one go; larger ones are copied in the kernel.
_SMALL = 1 << 20
_host: str | None = None


def _host_part() -> str:
    global _host
    if _host is None:
        host = socket.gethostname() or "localhost"
        _host = host.replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")
    return _host


def _find_delivered(path: str, unique: str, name: str) -> Path | None:
    exact = os.path.join(path, "new", name)
    if os.path.lexists(exact):
        return Path(exact)
    prefix = unique + "."
    for sub in ("new", "cur"):
        with os.scandir(os.path.join(path, sub)) as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    return Path(entry.path)
    return None


def _folder_dir(root: Path | str, folder: str, fsync: bool) -> str:
    """The folder's directory, created when this process has not seen it complete."""
    key = (os.fspath(root), folder)
    path = _complete_folders.get(key)
    if path is not None and path in _complete_dirs:
        return path
    path = os.fspath(ensure_maildir(Path(root), folder, fsync=fsync))
    _complete_dirs.add(path)
    if len(_complete_folders) >= _MAX_KNOWN_FOLDERS:
        _complete_folders.clear()
    _complete_folders[key] = path
    return path


def _copy(source: Path | bytes, prefix: bytes, out_fd: int, skip: int = 0) -> int:
    """Write ``prefix`` and the message (bytes, or the file at ``source`` less its first
    ``skip`` bytes) to ``out_fd``."""
    if isinstance(source, bytes):
        _write_all(out_fd, prefix)
        _write_all(out_fd, source)
        return len(prefix) + len(source)
    in_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(in_fd).st_size - skip
        if skip:
            os.lseek(in_fd, skip, os.SEEK_SET)
        if size <= _SMALL:
            chunks = [prefix]
            while chunk := os.read(in_fd, _SMALL):
                chunks.append(chunk)
            data = b"".join(chunks)
            _write_all(out_fd, data)
            return len(data)
        _write_all(out_fd, prefix)
        with open(in_fd, "rb", closefd=False) as src, open(out_fd, "wb", closefd=False) as out:
            shutil.copyfileobj(src, out, _SMALL)
            return len(prefix) + src.tell() - skip
    finally:
        os.close(in_fd)


def delivery_headers(sender: str, mailbox: str) -> bytes:
    """The trace headers final delivery adds on top (RFC 5321 4.4): Return-Path, Delivered-To."""
    clean = "".join(ch for ch in sender if ch.isprintable() and ch not in "<>\r\n")
    return f"Return-Path: <{clean}>\r\nDelivered-To: {mailbox}\r\n".encode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def deliver(
    root: Path | str,
    folder: str,
    source: Path | bytes,
    unique: str,
    *,
    fsync: bool = True,
    quota_bytes: int = 0,
    prefix: bytes = b"",
    fresh: bool = False,
    unsynced: set[str] | None = None,
    skip: int = 0,
    link: bool = False,
) -> Path:
    """Store ``prefix + source`` in ``folder`` atomically, at most once per ``unique``.

    Blocking. Writes ``tmp/``, fsyncs, links into ``new/`` and fsyncs ``new/``. ``skip``
    leaves out the first bytes of a ``source`` file. ``link=True`` says the file ``source`` is
    durable and already exactly the message to store (no ``prefix``, no ``skip``): it is
    hard-linked into ``new/``, or copied where that is impossible. If a message
    whose name starts with ``unique`` is already in ``new/`` or ``cur/`` it is returned and
    nothing is written. ``fresh=True`` says the caller knows no earlier attempt can have
    written ``unique``, which skips the directory scan (an exact name is still found).
    Raises :class:`OverQuota` when ``quota_bytes > 0`` and the message does not fit.

    With ``unsynced`` (a set), the ``new/`` directory is added to it instead of being fsynced:
    the delivery is durable only after the caller's :func:`sync_dirs` of that set.
    """
    if not _UNIQUE_RE.fullmatch(unique):
        raise ValueError(f"invalid unique name {unique!r}: use letters, digits, '-' and '_'")
    attempt = partial(
        _deliver, root, folder, source, unique, fsync, quota_bytes, prefix, fresh, unsynced, skip
    )
    try:
        return attempt(link)
    except FileNotFoundError:
        _complete_dirs.discard(os.fspath(root))  # removed behind our back: check and retry
        _complete_dirs.discard(os.fspath(folder_path(root, folder)))
        return attempt(link)


def _deliver(
    root: Path | str,
    folder: str,
    source: Path | bytes,
    unique: str,
    fsync: bool,
    quota_bytes: int,
    prefix: bytes,
    fresh: bool,
    unsynced: set[str] | None,
    skip: int,
    link: bool,
) -> Path:
    if link and (prefix or skip or isinstance(source, bytes)):
        raise ValueError("link=True needs a source file stored as it is")
    path = _folder_dir(root, folder, fsync)
    size = -1  # the copy's size is known once it is written
    if link or not fresh or quota_bytes > 0:
        size = len(prefix) - skip
        size += len(source) if isinstance(source, bytes) else os.stat(source).st_size
    if not fresh or quota_bytes > 0:
        found = _find_delivered(path, unique, f"{unique}.{_host_part()},S={size}")
        if found is not None:
            return found
        if quota_bytes > 0:
            _check_quota(Path(root), size, quota_bytes)
    new_dir = os.path.join(path, "new")
    if link:
        target = os.path.join(new_dir, f"{unique}.{_host_part()},S={size}")
        try:
            os.link(source, target)
        except FileExistsError:
            return Path(target)  # delivered meanwhile by another thread
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
        else:
            return _stored(root, new_dir, target, size, fsync, unsynced)
    tmp = os.path.join(path, "tmp", f"{unique}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = _copy(source, prefix, fd, skip)
            if fsync:
                _fdatasync(fd)
        finally:
            os.close(fd)
        target = os.path.join(new_dir, f"{unique}.{_host_part()},S={size}")
        try:
            os.link(tmp, target)
        except FileExistsError:
            return Path(target)  # delivered before (fresh), or meanwhile by another thread
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return _stored(root, new_dir, target, size, fsync, unsynced)


#: Why a hard link into a Maildir can fail where a copy works: another file system, too many
#: links, a file system without hard links.
_NO_LINK = frozenset({errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def _stored(
    root: Path | str,
    new_dir: str,
    target: str,
    size: int,
    fsync: bool,
    unsynced: set[str] | None,
) -> Path:
    """A new file is in ``new/``: make it durable (now, or in the caller's batch) and count it."""
    if unsynced is not None:
        unsynced.add(new_dir)
    elif fsync:
        _fsync_dir(new_dir)
    adjust_usage(root, size, 1)
    return Path(target)


def sync_dirs(paths: set[str]) -> None:
    """fsync every directory in ``paths`` (the ``unsynced`` set of :func:`deliver`), then empty
    it; blocking. Deliveries into them are durable when this returns."""
    for path in sorted(paths):
        _fsync_dir(path)
    paths.clear()


#: One write for :func:`deliver_many`: Maildir root, folder, spooled message file, unique
#: name, fresh, prefix (latin-1 text), disk limit in bytes (0: none), bytes of the file to
#: leave out at its start, link (see :func:`deliver`).
DeliveryRequest = tuple[str, str, str, str, bool, str, int, int, bool]


def _deliver_one(request: DeliveryRequest, fsync: bool, unsynced: set[str]) -> list[Any]:
    root, folder, source, unique, fresh, prefix, quota, skip, link = request
    options: dict[str, Any] = {
        "fsync": fsync,
        "quota_bytes": quota,
        "prefix": prefix.encode("latin-1"),
        "fresh": fresh,
        "unsynced": unsynced if fsync else None,
        "skip": skip,
        "link": link,
    }
    try:
        note = ""
        try:
            path = deliver(root, folder, Path(source), unique, **options)
        except InvalidFolder as exc:
            note, folder = str(exc), INBOX
            path = deliver(root, folder, Path(source), unique, **options)
        return ["delivered", str(path), folder, note]
    except OverQuota as exc:
        return ["over_quota", exc.usage, exc.size, exc.quota]
    except OSError as exc:
        return ["error", exc.errno or errno.EIO, exc.strerror or str(exc)]


def deliver_many(
    requests: Sequence[DeliveryRequest],
    *,
    fsync: bool = True,
    synced_later: Callable[[str], bool] | None = None,
) -> list[list[Any]]:
    """Store every request with :func:`deliver`, then fsync each ``new/`` directory once.

    Blocking. An invalid folder falls back to INBOX. One result per request, made of plain
    values (they cross a pipe as JSON): ``["delivered", path, folder, note]`` (``note`` says
    why the folder changed, else empty), ``["over_quota", usage, size, quota]`` or
    ``["error", errno, text]``. A delivery is reported only once its directory is synced,
    except in the directories for which ``synced_later(path)`` is true: the caller makes
    those durable before it reports them (message files are fsynced all the same).
    """
    results: list[list[Any]] = []
    written: list[set[str]] = []
    for request in requests:
        directories: set[str] = set()
        results.append(_deliver_one(request, fsync, directories))
        written.append(directories)
    failed: dict[str, OSError] = {}
    for directory in sorted(set().union(*written)):
        if synced_later is not None and synced_later(directory):
            continue
        try:
            _fsync_dir(directory)
        except OSError as exc:
            failed[directory] = exc
    for index, directories in enumerate(written):
        broken = [failed[d] for d in directories if d in failed]
        if broken and results[index][0] == "delivered":
            results[index] = ["error", broken[0].errno or errno.EIO, broken[0].strerror or ""]
    return results


# ---------------------------------------------------------------------- usage and quota
def _count(root: Path) -> tuple[int, int]:
    """Exact (bytes, messages) of every message in every folder."""
    total = count = 0
    folders = [root]
    with contextlib.suppress(FileNotFoundError):
        folders += [Path(e.path) for e in os.scandir(root) if e.name[:1] == "." and e.is_dir()]
    for folder in folders:
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(folder / sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                match = _SIZE_RE.search(entry.name)
                if match:
                    total += int(match.group(1))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
                count += 1
    return total, count


def _recount(root: Path, quota_bytes: int) -> int:
    """Count exactly and rewrite ``maildirsize``; return the bytes in use."""
    total, count = _count(root)
    if quota_bytes > 0 and root.is_dir():
        tmp = root / f"tmp/{QUOTA_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            tmp.write_text(f"{quota_bytes}S\n{total} {count}\n")
            os.replace(tmp, root / QUOTA_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return total


def _cached(root: Path) -> int | None:
    """Bytes in use according to ``maildirsize``, or None when it must be recounted."""
    path = root / QUOTA_FILE
    try:
        info = path.stat()
        if info.st_size > _QUOTA_MAX_SIZE or time.time() - info.st_mtime > _QUOTA_MAX_AGE:
            return None
        lines = path.read_text("ascii").splitlines()
        return max(0, sum(int(line.split()[0]) for line in lines[1:] if line.strip()))
    except (OSError, ValueError, IndexError):
        return None


def _check_quota(root: Path, size: int, quota_bytes: int) -> None:
    usage = _cached(root)
    if usage is None:
        usage = _recount(root, quota_bytes)
    if usage + size > quota_bytes:
        usage = _recount(root, quota_bytes)  # never refuse on a stale figure
        if usage + size > quota_bytes:
            raise OverQuota(usage, size, quota_bytes)


def usage_bytes(root: Path, *, exact: bool = False) -> int:
    """Bytes used by every message in every folder of the mailbox at ``root``.

    Cheap: uses ``maildirsize`` when it is fresh; ``exact=True`` always counts the files.
    """
    root = Path(root)
    if not exact:
        cached = _cached(root)
        if cached is not None:
            return cached
    return _count(root)[0]


def adjust_usage(root: Path | str, delta_bytes: int, delta_count: int) -> None:
    """Record a change of usage in ``maildirsize`` (if there is one).

    Call after removing messages outside :func:`deliver` (expunge, POP3 DELE) with negative
    numbers, so that the cached usage stays right.
    """
    path = os.path.join(root, QUOTA_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.write(fd, f"{delta_bytes} {delta_count}\n".encode("ascii"))
    finally:
        os.close(fd)
