"""The durable spool (Q1): every accepted message, as a raw file plus a JSON envelope.

Layout under the spool directory::

    tmp/           files being written (anything here at start is a leftover and is removed)
    msg/<id>       the raw message exactly as received (with our Received header)
    env/<id>.json  the envelope with per-recipient state; its presence is the commit point
    corrupt/       envelopes that could not be used (kept for the admin, never deleted)
    free/          files of finished messages kept for reuse (their content is garbage)
    lock           held (flock) by the one process using the spool

:meth:`Spool.accept` uses group commit. The reactor thread never touches the disk: it hands
each message to a pool of ``threads`` workers, which write and fsync its two files into
``tmp/`` in parallel. A commit thread takes every written message waiting (up to
``max_batch``), renames the batch into place (messages first, then envelopes) with one fsync
per target directory, and only then fires the batch's Deferreds on the reactor thread. While it
commits one batch, the workers keep writing the next.
A crash at any moment leaves each message either fully queued or invisible; :meth:`Spool.start`
removes the invisible remains.

Files are recycled, like a database's log segments: a finished message's small files move to
``free/`` and are overwritten by the next messages instead of being unlinked and created anew.
Creating an inode is the most expensive file-system operation of a queued message (on ext4
without a journal its allocator scans past every recently deleted inode of the group).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger

log = Logger(namespace="mailmax.spool")

RECIPIENT_KINDS = ("local", "relay")
RECIPIENT_STATES = ("pending", "delivered", "deferred", "failed", "bounced")
#: States after which nothing more happens to a recipient.
FINAL_STATES = frozenset({"delivered", "bounced"})
#: Version of the envelope file format.
FORMAT_VERSION = 1

_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_encode = json.JSONEncoder(separators=(",", ":")).encode
#: Most buffers one writev() call takes (Linux IOV_MAX).
_IOV_MAX = 1024
#: Files kept in free/ for reuse, and the largest one kept (bigger ones are unlinked).
FREE_FILES = 256
FREE_FILE_MAX_BYTES = 64 * 1024
#: Just-committed messages whose envelope and header stay in memory for the queue runner.
RECENT_MESSAGES = 1024
#: The longest header kept with them (a message with a longer one is not kept).
RECENT_HEAD_BYTES = 64 * 1024


def check_id(queue_id: str) -> str:
    """Return ``queue_id`` if it is a valid queue id (safe as a file name); else ValueError."""
    if not isinstance(queue_id, str) or not _ID_RE.fullmatch(queue_id):
        raise ValueError(f"invalid queue id {queue_id!r}")
    return queue_id


@dataclass
class SpoolRecipient:
    """One recipient of a queued message and its delivery state.

    ``kind`` is ``"local"`` (a mailbox here) or ``"relay"`` (another server); ``state`` is one of
    :data:`RECIPIENT_STATES`: ``failed`` means "permanently failed, bounce not sent yet",
    ``bounced`` that the bounce is queued (or needs none).
    """

    address: str
    kind: str = "local"
    mailbox: str = ""
    state: str = "pending"
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    #: ESMTP RCPT parameters as given (``NOTIFY``, ``ORCPT``), upper-case keys.
    params: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True when nothing more will happen to this recipient."""
        return self.state in FINAL_STATES


@dataclass
class SpoolEnvelope:
    """A queued message's envelope: who sent it, to whom, and how far delivery got."""

    id: str
    sender: str
    recipients: list[SpoolRecipient]
    received_at: float
    size: int = 0
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    session_id: str = ""
    #: ESMTP MAIL parameters as given (``RET``, ``ENVID``, ``BODY``, ``SMTPUTF8``), upper-case keys.
    params: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialise to JSON bytes (ASCII; undecodable characters survive as escapes)."""
        data = {"version": FORMAT_VERSION, **vars(self)}
        data["recipients"] = [vars(recipient) for recipient in self.recipients]
        return _encode(data).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> SpoolEnvelope:
        """Parse and validate JSON written by :meth:`to_json`; raise ``ValueError`` if invalid."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"envelope is not valid JSON: {exc}") from None
        fields = _validate(raw, _ENVELOPE_FIELDS, "envelope")
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported envelope format version {raw.get('version')!r}")
        recipients = [
            SpoolRecipient(**_validate(item, _RECIPIENT_FIELDS, f"recipient {index}"))
            for index, item in enumerate(fields.pop("recipients"))
        ]
        envelope = cls(recipients=recipients, **fields)
        check_id(envelope.id)
        return envelope


_REQUIRED = object()
_NUMBER = (int, float)
#: name -> (allowed types, default or _REQUIRED, allowed values or None)
_FieldSpec = dict[str, tuple[tuple[type, ...], Any, tuple[str, ...] | None]]
_ENVELOPE_FIELDS: _FieldSpec = {
    "id": ((str,), _REQUIRED, None),
    "sender": ((str,), _REQUIRED, None),
    "recipients": ((list,), _REQUIRED, None),
    "received_at": (_NUMBER, _REQUIRED, None),
    "size": ((int,), 0, None),
    "client_ip": ((str,), "", None),
    "helo": ((str,), "", None),
    "auth_user": ((str, type(None)), None, None),
    "session_id": ((str,), "", None),
    "params": ((dict,), {}, None),
}
_RECIPIENT_FIELDS: _FieldSpec = {
    "address": ((str,), _REQUIRED, None),
    "kind": ((str,), "local", RECIPIENT_KINDS),
    "mailbox": ((str,), "", None),
    "state": ((str,), "pending", RECIPIENT_STATES),
    "attempts": ((int,), 0, None),
    "next_attempt": (_NUMBER, 0.0, None),
    "last_error": ((str,), "", None),
    "params": ((dict,), {}, None),
}


def _validate(raw: Any, spec: _FieldSpec, what: str) -> dict[str, Any]:
    """Check the keys of a decoded JSON object against ``spec``; return the known fields."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object")
    out: dict[str, Any] = {}
    for name, (types, default, allowed) in spec.items():
        if name not in raw:
            if default is _REQUIRED:
                raise ValueError(f"{what}: {name!r} is missing")
            out[name] = dict(default) if isinstance(default, dict) else default
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"{what}: {name!r} has the wrong type ({type(value).__name__})")
        if allowed is not None and value not in allowed:
            raise ValueError(f"{what}: {name!r} is {value!r}; expected one of {allowed}")
        if isinstance(value, dict) and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError(f"{what}: {name!r} must map strings to strings")
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"{what}: {name!r} must not be negative")
        out[name] = float(cast(float, value)) if types == _NUMBER else value
    return out


@dataclass
class _Item:
    """One accept waiting for, or going through, a group commit."""

    queue_id: str
    envelope: bytes
    chunks: list[bytes]
    deferred: defer.Deferred[str]
    error: BaseException | None = None
    stage: str = "written"  # written -> message (renamed) -> committed
    spooled: SpoolEnvelope | None = None
    head: bytes | None = None


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path | str) -> None:
    """Remove a file of ours; a missing one or something else in its place is left alone."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(path)


def _head(chunks: Sequence[bytes]) -> bytes | None:
    """The header of a message given as chunks, up to and with the empty line that ends it;
    None when it is longer than :data:`RECENT_HEAD_BYTES` (or never ends)."""
    start = b""
    for chunk in chunks:
        start += chunk[: RECENT_HEAD_BYTES + 4 - len(start)]
        if start.startswith((b"\r\n", b"\n")):
            return start[: 2 if start[:1] == b"\r" else 1]
        ends = [i for i in (start.find(b"\r\n\r\n"), start.find(b"\n\n")) if i >= 0]
        if ends:
            end = min(ends)
            return start[: end + (4 if start[end : end + 4] == b"\r\n\r\n" else 2)]
        if len(start) > RECENT_HEAD_BYTES:
            return None
    return None


def _write_chunks(fd: int, chunks: Sequence[bytes]) -> None:
    """Write every chunk to ``fd`` in order, with as few system calls as possible."""
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start : start + _IOV_MAX]
        written = os.writev(fd, group)
        expected = sum(len(chunk) for chunk in group)
        if written < expected:  # a short write: finish the rest plainly
            rest = memoryview(b"".join(group))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]


class Spool:
    """The queue directory shared by the SMTP receiver and the queue runner."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        threads: int = 4,
        max_batch: int = 64,
        reactor: Any = None,
    ) -> None:
        if threads < 1 or max_batch < 1:
            raise ValueError("threads and max_batch must be at least 1")
        self.directory = Path(directory)
        self.fsync = fsync
        self.threads = threads
        self.max_batch = max_batch
        self._reactor = reactor
        self.tmp_dir = self.directory / "tmp"
        self.msg_dir = self.directory / "msg"
        self.env_dir = self.directory / "env"
        self.corrupt_dir = self.directory / "corrupt"
        self.free_dir = self.directory / "free"
        self._tmp, self._msg, self._env = str(self.tmp_dir), str(self.msg_dir), str(self.env_dir)
        self._free_dir = str(self.free_dir)
        self._free: list[str] = []  # names in free/, the most recently freed last
        self._free_lock = threading.Lock()
        self._free_names = itertools.count()
        self._free_prefix = ""
        #: Called on the reactor thread with the ids of each committed batch.
        self.committed: list[Callable[[list[str]], None]] = []
        self._cond = threading.Condition()
        self._writing = 0  # accepts whose files are being written
        self._ready: list[_Item] = []  # written (or failed), waiting for a commit round
        self._inflight: set[str] = set()
        self._recent: dict[str, tuple[SpoolEnvelope, bytes]] = {}
        self._running = False
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._coordinator: threading.Thread | None = None
        self._stop_waiters: list[defer.Deferred[None]] = []
        self._id_lock = threading.Lock()
        self._last_us = 0
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def reactor(self) -> Any:
        """The reactor Deferreds fire on (the global one unless given)."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def start(self) -> None:
        """Create the directories, remove leftovers, start the commit threads."""
        if self._running:
            return
        _ = self.reactor
        created = False
        dirs = (self.directory, self.tmp_dir, self.msg_dir, self.env_dir, self.corrupt_dir)
        for path in (*dirs, self.free_dir):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                created = True
        if created and self.fsync:
            _fsync_dir(self.directory)
            _fsync_dir(self.directory.parent)
        self._lock()
        try:
            self._clean()
        except BaseException:
            self._unlock()
            raise
        self._stopping = False
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="spool-write")
        self._coordinator = threading.Thread(
            target=self._coordinate, name="spool-commit", daemon=True
        )
        self._running = True
        self._coordinator.start()

    def _lock(self) -> None:
        """Take the spool's lock: two processes must never share a queue directory."""
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(
                errno.EBUSY,
                f"the queue directory {self.directory} is in use by another MailMax process",
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _clean(self) -> None:
        """Remove what a crash left half-done: tmp files and messages without an envelope."""
        for entry in os.scandir(self.tmp_dir):
            _unlink(entry.path)
        self._free = [e.name for e in os.scandir(self.free_dir) if e.is_file(follow_symlinks=False)]
        for name in self._free[FREE_FILES:]:
            _unlink(os.path.join(self._free_dir, name))
        del self._free[FREE_FILES:]
        self._free_prefix = f"{time.time_ns():x}"
        envelopes = {e.name[:-5] for e in os.scandir(self.env_dir) if e.name.endswith(".json")}
        messages = {e.name for e in os.scandir(self.msg_dir)}
        for name in messages - envelopes:
            log.info("removing {name}: its envelope was never committed", name=name)
            _unlink(self.msg_dir / name)
        for name in envelopes - messages:
            log.error("envelope {name} has no message file; moved to corrupt/", name=name)
            os.replace(self.env_dir / f"{name}.json", self.corrupt_dir / f"{name}.json")
        if self.fsync:
            _fsync_dir(self.msg_dir)
            _fsync_dir(self.env_dir)

    def stop(self) -> defer.Deferred[None]:
        """Commit what is already queued, then stop the threads."""
        if not self._running:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._stop_waiters.append(d)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        return d

    def _stopped_now(self) -> None:
        self._running = False
        self._recent.clear()
        self._unlock()
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)

    # ------------------------------------------------------------------ ids and paths
    def new_id(self) -> str:
        """A unique queue id, sortable by time and safe as a file name (18 hex digits)."""
        now = time.time_ns() // 1000
        with self._id_lock:
            if now <= self._last_us:
                now = self._last_us + 1
            self._last_us = now
        return f"{now:014x}{secrets.randbits(16):04x}"

    def message_path(self, queue_id: str) -> Path:
        """Where the raw message of ``queue_id`` is."""
        return self.msg_dir / check_id(queue_id)

    def envelope_path(self, queue_id: str) -> Path:
        """Where the envelope of ``queue_id`` is."""
        return self.env_dir / f"{check_id(queue_id)}.json"

    def _paths(self, queue_id: str) -> tuple[str, str]:
        """The message and envelope file names of a checked id, as strings (hot paths)."""
        return os.path.join(self._msg, queue_id), os.path.join(self._env, queue_id + ".json")

    def _tmp_paths(self, queue_id: str) -> tuple[str, str]:
        tmp = os.path.join(self._tmp, queue_id)
        return tmp + ".msg", tmp + ".env"

    # ------------------------------------------------------------------ accept (group commit)
    def accept(self, envelope: SpoolEnvelope, message: Sequence[bytes]) -> defer.Deferred[str]:
        """Queue ``message`` (chunks) with ``envelope``; fire with the id once durable.

        Call on the reactor thread. ``message`` is a sequence of bytes chunks (a single bytes
        object is taken as one chunk). Sets ``envelope.size``. Errbacks with an ``OSError`` when
        the message could not be stored (nothing of it is then visible in the spool).
        """
        try:
            check_id(envelope.id)
            parts: Sequence[bytes | bytearray | memoryview] = message
            if isinstance(message, bytes | bytearray | memoryview):
                parts = [message]  # one chunk, not a sequence of ints
            chunks = [chunk if type(chunk) is bytes else bytes(chunk) for chunk in parts]
            envelope.size = sum(len(chunk) for chunk in chunks)
            data = envelope.to_json()
        except (ValueError, TypeError) as exc:
            return defer.fail(exc)
        d: defer.Deferred[str] = defer.Deferred()
        with self._cond:
            if not self._running or self._stopping:
                return defer.fail(OSError(errno.ESHUTDOWN, "the spool is not running"))
            item = _Item(envelope.id, data, chunks, d, spooled=envelope, head=_head(chunks))
            self._writing += 1
        assert self._pool is not None
        self._pool.submit(self._write, item)
        return d

    def _coordinate(self) -> None:
        """Commit thread: rename whatever has been written, one directory fsync per round."""
        while True:
            with self._cond:
                while not self._ready and not (self._stopping and self._writing == 0):
                    self._cond.wait()
                if not self._ready:
                    break
                batch = self._ready[: self.max_batch]
                del self._ready[: self.max_batch]
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a Deferred unfired
                for item in batch:
                    if item.stage != "committed":
                        item.error = item.error or exc
                with contextlib.suppress(Exception):
                    self._discard(batch)
            self.reactor.callFromThread(self._fire, batch)
        assert self._pool is not None
        self._pool.shutdown(wait=True)
        self.reactor.callFromThread(self._stopped_now)

    def _commit(self, batch: list[_Item]) -> None:
        """Rename a round of written items into place: messages, fsync, envelopes, fsync."""
        written = [item for item in batch if item.error is None]
        exists = os.path.lexists
        for item in written:
            try:
                target, envelope = self._paths(item.queue_id)
                if exists(target) or exists(envelope):
                    raise FileExistsError(errno.EEXIST, "queue id already in use", item.queue_id)
                os.rename(self._tmp_paths(item.queue_id)[0], target)
                item.stage = "message"
            except OSError as exc:
                item.error = exc
        moved = [item for item in written if item.stage == "message"]
        if not moved:
            self._discard(batch)
            return
        try:
            if self.fsync:
                _fsync_dir(self.msg_dir)
            with self._cond:
                self._inflight.update(item.queue_id for item in moved)
            for item in moved:
                try:
                    os.rename(self._tmp_paths(item.queue_id)[1], self._paths(item.queue_id)[1])
                    item.stage = "committed"
                except OSError as exc:
                    item.error = exc
            if self.fsync:
                _fsync_dir(self.env_dir)
        except OSError as exc:
            for item in moved:
                if item.stage == "committed":
                    _unlink(self._paths(item.queue_id)[1])
                item.stage, item.error = "message", exc
        self._discard(batch)

    def _discard(self, batch: list[_Item]) -> None:
        """Remove every file of the items that did not commit."""
        for item in batch:
            if item.stage == "committed":
                continue
            item.error = item.error or OSError(errno.EIO, "message not committed")
            for path in self._tmp_paths(item.queue_id):
                _unlink(path)
            if item.stage == "message":
                _unlink(self._paths(item.queue_id)[0])

    def _write(self, item: _Item) -> None:
        """Worker thread: write and fsync the two files of one item into tmp/, then hand the
        item (or its error) to the commit thread."""
        tmp_message, tmp_envelope = self._tmp_paths(item.queue_id)
        try:
            self._write_file(tmp_message, item.chunks)
            self._write_file(tmp_envelope, [item.envelope])
        except BaseException as exc:
            item.error = exc
            for path in (tmp_message, tmp_envelope):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            item.chunks = []
            with self._cond:
                self._writing -= 1
                self._ready.append(item)
                self._cond.notify()

    def _write_file(self, path: Path | str, chunks: Sequence[bytes]) -> None:
        """Write a new file at ``path`` (which must not exist), reusing a free file if any."""
        fd = self._reuse(path)
        recycled = fd is not None
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_chunks(fd, chunks)
            if recycled:
                os.ftruncate(fd, sum(len(chunk) for chunk in chunks))
            if self.fsync:
                _fdatasync(fd)
        finally:
            os.close(fd)

    def _reuse(self, path: Path | str) -> int | None:
        """Give a free file the name ``path`` (never replacing a file) and open it; None when
        there is no free file."""
        while True:
            with self._free_lock:
                if not self._free:
                    return None
                name = os.path.join(self._free_dir, self._free.pop())
            try:
                os.link(name, path)
            except FileNotFoundError:
                if os.path.isdir(os.path.dirname(path)):
                    continue  # removed from free/ behind our back: try the next one
                self._keep_free(name)
                raise
            except OSError:
                self._keep_free(name)
                raise
            os.unlink(name)
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def _keep_free(self, name: str) -> None:
        with self._free_lock:
            self._free.append(os.path.basename(name))

    def _release(self, path: str) -> None:
        """A finished file: keep it in free/ for reuse when small and there is room, else
        unlink it. A missing file is fine."""
        with self._free_lock:
            room = len(self._free) < FREE_FILES
            name = f"{self._free_prefix}-{next(self._free_names)}"
        try:
            if room and os.stat(path).st_size <= FREE_FILE_MAX_BYTES:
                os.rename(path, os.path.join(self._free_dir, name))
                with self._free_lock:
                    self._free.append(name)
                return
        except (FileNotFoundError, IsADirectoryError):
            return
        _unlink(path)

    def _fire(self, batch: list[_Item]) -> None:
        """Reactor thread: answer every accept of a batch, then tell the subscribers."""
        done = [item.queue_id for item in batch if item.stage == "committed"]
        with self._cond:
            self._inflight.difference_update(item.queue_id for item in batch)
        recent = self._recent
        for item in batch:
            if item.stage == "committed":
                if item.spooled is not None and item.head is not None:
                    recent[item.queue_id] = (item.spooled, item.head)
                item.deferred.callback(item.queue_id)
            else:
                item.deferred.errback(item.error)
            item.spooled, item.head = None, None
        while len(recent) > RECENT_MESSAGES:
            del recent[next(iter(recent))]
        if not done:
            return
        for subscriber in list(self.committed):
            try:
                subscriber(done)
            except Exception:
                log.failure("spool commit subscriber {name} failed", name=repr(subscriber))

    # ------------------------------------------------------------------ the runner's side
    def take_recent(self, queue_id: str) -> tuple[SpoolEnvelope, bytes] | None:
        """The envelope and the header (with the empty line ending it) of a message committed
        moments ago, or None when they are not in memory (then read them from disk). Call on
        the reactor thread; each is handed out once, as a copy of what was written to disk."""
        recent = self._recent.pop(queue_id, None)
        if recent is None:
            return None
        envelope, head = recent
        copy = SpoolEnvelope(**vars(envelope))
        copy.recipients = [SpoolRecipient(**vars(r)) for r in envelope.recipients]
        return copy, head

    def pending_ids(self) -> list[str]:
        """Ids of every complete queued message on disk, oldest first (blocking)."""
        names = [e.name[:-5] for e in os.scandir(self.env_dir) if e.name.endswith(".json")]
        with self._cond:
            inflight = set(self._inflight)
        return sorted(n for n in names if _ID_RE.fullmatch(n) and n not in inflight)

    def load(self, queue_id: str) -> SpoolEnvelope:
        """Read the envelope of ``queue_id`` (blocking).

        Raises ``FileNotFoundError`` when the message is no longer queued and ``ValueError`` when
        the envelope file is unusable.
        """
        with open(self._paths(check_id(queue_id))[1], "rb") as handle:
            envelope = SpoolEnvelope.from_json(handle.read())
        if envelope.id != queue_id:
            raise ValueError(f"envelope file {queue_id}.json names message {envelope.id!r}")
        return envelope

    def quarantine(self, queue_id: str) -> None:
        """Move an unusable message out of the queue into ``corrupt/`` (blocking)."""
        for path in (self.envelope_path(queue_id), self.message_path(queue_id)):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, self.corrupt_dir / path.name)
        if self.fsync:
            _fsync_dir(self.env_dir)

    def save(self, envelope: SpoolEnvelope) -> None:
        """Atomically rewrite the envelope file (tmp, fsync, rename; blocking)."""
        target = self.envelope_path(envelope.id)
        tmp = self.tmp_dir / f"{envelope.id}.save-{threading.get_ident()}-{secrets.token_hex(4)}"
        try:
            self._write_file(tmp, [envelope.to_json()])
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise
        if self.fsync:
            _fsync_dir(self.env_dir)

    def remove(self, queue_id: str) -> None:
        """Remove a message whose recipients are all done (blocking)."""
        self.remove_many([queue_id])

    def remove_many(self, queue_ids: Sequence[str]) -> None:
        """Remove several messages whose recipients are all done, with one directory fsync
        (blocking). The envelopes go first: a crash before the fsync leaves a message queued,
        whose next delivery finds the copies already made."""
        paths = [self._paths(check_id(queue_id)) for queue_id in queue_ids]
        for _message, envelope in paths:
            self._release(envelope)
        if self.fsync and paths:
            _fsync_dir(self._env)
        for message, _envelope in paths:
            self._release(message)
