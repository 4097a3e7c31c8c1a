"""The durable spool: every accepted message, as a raw file plus a JSON envelope.

Layout under the spool directory::

    tmp/           files being written (anything here at start is a leftover and is removed)
    msg/<id>       the raw message exactly as received (with our Received header); for one
                   local recipient, first the trace headers of its delivery, so that the
                   delivery is a hard link (the envelope's ``trace_bytes`` counts them)
    env/<id>.json  the envelope with per-recipient state (a message is queued when both files
                   are in place)
    corrupt/       envelopes that could not be used (kept for the admin, never deleted)
    free/          files of finished messages kept for reuse (their content is garbage)
    lock           held (flock) by the one process using the spool

:meth:`Spool.accept` uses group commit (:mod:`mailmax.core.spool.writer`). The reactor thread
never touches the disk: the message's two files are written into ``tmp/`` and made durable,
then a commit thread renames whole batches into place and makes the renames durable, and only
then are the batch's Deferreds fired. With ``sync="files"`` that is an fsync of every file
and directory; with ``sync="filesystem"`` a sync of the file system per batch. In the server the
writing runs in a helper process (``helper=True``), away from the reactor's interpreter lock.
A crash at any moment leaves each message either fully queued or invisible; :meth:`Spool.start`
removes the invisible remains (a file of either kind without the other). When only the writer
process dies, a new one takes over at once and every accept the old one had not answered is
settled before its reply: a message with both files in place is made durable and reported
committed, any other is removed (durably) and fails, so a failed accept is never delivered.

Files are recycled, like a database's log segments: a finished message's small files move to
``free/`` and are overwritten by the next messages instead of being unlinked and created anew.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.sendnow import write_now
from mailmax.core.spool import files as spoolfiles
from mailmax.core.spool import trace
from mailmax.core.spool import writer as spoolwriter
from mailmax.core.spool.envelope import (  # also imported from here by the rest of MailMax
    SpoolEnvelope,
    SpoolRecipient,
    check_id,
)
from mailmax.core.spool.writerpipe import WriterPipe

log = Logger(namespace="mailmax.spool")

_ID_RE = spoolwriter.QUEUE_ID
_fsync_dir = spoolfiles.fsync_dir
_unlink = spoolfiles.unlink
#: Just-committed messages whose envelope and header stay in memory for the queue runner.
RECENT_MESSAGES = 1024
#: The longest header kept with them (a message with a longer one is not kept).
RECENT_HEAD_BYTES = 64 * 1024
#: How many writer processes a call is sent to before it fails (when they die under it).
CALL_TRIES = 3
#: Seconds between attempts to start a writer process when starting one fails.
RESPAWN_SECONDS = 1.0


def _head(chunks: Sequence[bytes]) -> bytes | None:
    """The header of a message given as chunks, up to and with the empty line that ends it;
    None when it is longer than :data:`RECENT_HEAD_BYTES` (or never ends)."""
    start = b""
    for chunk in chunks:
        start += chunk[: RECENT_HEAD_BYTES + 4 - len(start)]
        if start.startswith((b"\r\n", b"\n")):
            return start[: 2 if start[:1] == b"\r" else 1]
        crlf = start.find(b"\r\n\r\n")
        # a bare "\n\n" matters only before that (searching on would scan the whole body)
        lf = start.find(b"\n\n", 0, crlf + 4 if crlf >= 0 else len(start))
        ends = [i for i in (crlf, lf) if i >= 0]
        if ends:
            end = min(ends)
            return start[: end + (4 if start[end : end + 4] == b"\r\n\r\n" else 2)]
        if len(start) > RECENT_HEAD_BYTES:
            return None
    return None


@dataclass
class _Accept:
    """What the reactor thread keeps of an accept until its result comes."""

    deferred: defer.Deferred[str]
    envelope: SpoolEnvelope
    head: bytes | None


@dataclass
class _Call:
    """A call to the writer process waiting for its answer."""

    deferred: defer.Deferred[Any]
    frame: bytes
    tries: int = 1


class Spool:
    """The queue directory shared by the SMTP receiver and the queue runner.

    With ``helper=True`` the accepts are written by a helper process (see
    :mod:`mailmax.core.spool.writer`); otherwise by threads of this process. ``sync`` is how a
    group commit makes its files durable (:data:`mailmax.core.spool.files.SYNC_MODES`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        threads: int = 4,
        max_batch: int = 64,
        reactor: Any = None,
        helper: bool = False,
        sync: str = "files",
    ) -> None:
        if threads < 1 or max_batch < 1:
            raise ValueError("threads and max_batch must be at least 1")
        if sync not in spoolfiles.SYNC_MODES:
            raise ValueError(f"sync must be one of {spoolfiles.SYNC_MODES}, not {sync!r}")
        if sync == "filesystem" and not spoolfiles.syncfs_available():
            log.warn("syncfs is not available here: the spool fsyncs each file instead")
            sync = "files"
        self.sync = sync
        self.directory = Path(directory)
        self.fsync = fsync
        self.threads = threads
        self.max_batch = max_batch
        self.helper = helper
        self._reactor = reactor
        self.tmp_dir = self.directory / "tmp"
        self.msg_dir = self.directory / "msg"
        self.env_dir = self.directory / "env"
        self.corrupt_dir = self.directory / "corrupt"
        self.free_dir = self.directory / "free"
        self._msg, self._env = str(self.msg_dir), str(self.env_dir)
        self.free = spoolfiles.FreeFiles(str(self.free_dir), taker=not helper)
        #: Called on the reactor thread with the ids of each committed batch.
        self.committed: list[Callable[[list[str]], None]] = []
        self._accepts: dict[str, _Accept] = {}  # reactor thread only
        self._calls: dict[int, _Call] = {}
        self._call_numbers = itertools.count(1)
        self._inflight: set[str] = set()  # being written: not yet for the runner
        self._inflight_lock = threading.Lock()
        self._recent: dict[str, tuple[SpoolEnvelope, bytes]] = {}
        self._running = False
        self._stopping = False
        self._writer: spoolwriter.GroupCommit | None = None
        self._helper: WriterPipe | None = None
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

    @property
    def writer_pid(self) -> int | None:
        """The process id of the writer process (None when writing in threads)."""
        return self._helper.pipe.pid if self._helper is not None else None

    def start(self) -> None:
        """Create the directories, remove leftovers, start the writer (threads or process)."""
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
            self._stopping = False
            if self.helper:
                self._spawn()
            else:
                self._writer = self._thread_writer()
                self._writer.start()
        except BaseException:
            self._unlock()
            raise
        self._running = True

    def _thread_writer(self) -> spoolwriter.GroupCommit:
        def done(batch: list[spoolwriter.WriteItem]) -> None:
            results = [(item.queue_id, None if item.committed else item.error) for item in batch]
            self.reactor.callFromThread(self._answer, results)

        return spoolwriter.GroupCommit(
            str(self.directory),
            fsync=self.fsync,
            threads=self.threads,
            max_batch=self.max_batch,
            free=self.free,
            done=done,
            stopped=lambda: self.reactor.callFromThread(self._stopped_now),
            sync=self.sync,
        )

    def _spawn(self) -> None:
        """Start the writer process; it inherits nothing but its pipes."""
        helper = WriterPipe(self)
        argv = [sys.executable, "-m", "mailmax.core.spool.writer"]
        argv += [] if self.fsync else ["--no-fsync"]
        argv += ["--sync", self.sync]
        argv += [str(self.threads), str(self.max_batch), str(self.directory)]
        self.reactor.spawnProcess(
            helper, sys.executable, argv, env=dict(os.environ), childFDs={0: "w", 1: "r", 2: 2}
        )
        self._helper = helper

    def _helper_gone(self, helper: WriterPipe) -> None:
        """The writer process ended: start a new one (unless stopping), hand it the calls in
        flight again, and settle each accept the old one had not answered before replying."""
        if helper is not self._helper:
            return
        self._helper = None
        if self._stopping:
            if not helper.stopped:
                log.error("the spool writer process ended before finishing its work")
        elif self._running:
            log.error("the spool writer process ended; starting a new one")
            self._respawn()
        self._replay_calls()
        unanswered = list(self._accepts)
        settled: defer.Deferred[Any] = defer.succeed(None)
        if unanswered:
            settled = threads.deferToThreadPool(
                self.reactor,
                self.reactor.getThreadPool(),
                spoolfiles.settle_unanswered,
                str(self.directory),
                unanswered,
                fsync=self.fsync,
            )
            settled.addCallback(lambda results: self._answer(list(results.items())))
            settled.addErrback(self._settle_failed, unanswered)
        if self._stopping:
            settled.addBoth(lambda _: self._stopped_now())

    def _respawn(self) -> None:
        """Start a new writer process; while that fails, accepts fail with EAGAIN and it is
        tried again every :data:`RESPAWN_SECONDS`."""
        if not self._running or self._stopping or self._helper is not None:
            return
        try:
            self._spawn()
        except Exception:
            log.failure("cannot start a spool writer process; trying again soon")
            self.reactor.callLater(RESPAWN_SECONDS, self._respawn)

    def _settle_failed(self, failure: Failure, unanswered: list[str]) -> None:
        log.failure("cannot settle the messages the spool writer left", failure)
        error = OSError(errno.EIO, "the spool writer stopped")
        self._answer([(queue_id, error) for queue_id in unanswered])

    def _replay_calls(self) -> None:
        """Send the calls the dead writer had not answered to the new one (they are safe to
        repeat: a Maildir delivery finds its earlier copy, a removal its missing files); a
        call that has already been sent :data:`CALL_TRIES` times fails instead."""
        calls, self._calls = self._calls, {}
        for number, call in sorted(calls.items()):
            if self._helper is None or call.tries >= CALL_TRIES:
                call.deferred.errback(OSError(errno.EIO, "the spool writer stopped"))
                continue
            call.tries += 1
            self._calls[number] = call
            self._to_writer(call.frame)

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
        self.free.load()
        envelopes = {e.name[:-5] for e in os.scandir(self.env_dir) if e.name.endswith(".json")}
        messages = {e.name for e in os.scandir(self.msg_dir)}
        for name in messages - envelopes:
            log.info("removing {name}: its envelope was never committed", name=name)
            _unlink(self.msg_dir / name)
        for name in envelopes - messages:
            # A commit cut short (its envelope reached the disk, its message did not), never
            # reported to the client; or a removal cut short.
            log.info("removing {name}: its message was never committed", name=name)
            _unlink(self.env_dir / f"{name}.json")
        if self.fsync:
            _fsync_dir(self.msg_dir)
            _fsync_dir(self.env_dir)

    def stop(self) -> defer.Deferred[None]:
        """Commit what is already queued, then stop the writer."""
        if not self._running:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._stop_waiters.append(d)
        if not self._stopping:
            self._stopping = True
            if self._writer is not None:
                self._writer.stop()
            elif self._helper is not None:
                self._helper.pipe.write(spoolwriter.STOP_FRAME)
                self._helper.pipe.closeStdin()
            else:
                self._stopped_now()
        return d

    def _stopped_now(self) -> None:
        self._running = False
        self._writer = None
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

    def message_bytes(self, path: str | os.PathLike[str]) -> bytes:
        """The message in the file ``path`` as received (blocking): a queued message of this
        spool without the trace headers its envelope counts, any other file whole."""
        data = Path(path).read_bytes()
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(self._msg):
            with contextlib.suppress(FileNotFoundError, ValueError):
                data = data[self.load(os.path.basename(path)).trace_bytes :]
        return data

    def envelope_path(self, queue_id: str) -> Path:
        """Where the envelope of ``queue_id`` is."""
        return self.env_dir / f"{check_id(queue_id)}.json"

    def _paths(self, queue_id: str) -> tuple[str, str]:
        """The message and envelope file names of a checked id, as strings (hot paths)."""
        return os.path.join(self._msg, queue_id), os.path.join(self._env, queue_id + ".json")

    # ------------------------------------------------------------------ accept (group commit)
    def accept(self, envelope: SpoolEnvelope, message: Sequence[bytes]) -> defer.Deferred[str]:
        """Queue ``message`` (chunks) with ``envelope``; fire with the id once durable.

        Call on the reactor thread. ``message`` is a sequence of bytes chunks (a single bytes
        object is taken as one chunk), beginning with ``envelope.trace_bytes`` of trace headers.
        Sets ``envelope.size`` (the message without them). Errbacks with an ``OSError`` when
        the message could not be stored (nothing of it is then visible in the spool).
        """
        try:
            queue_id = check_id(envelope.id)
            parts: Sequence[bytes | bytearray | memoryview] = message
            if isinstance(message, bytes | bytearray | memoryview):
                parts = [message]  # one chunk, not a sequence of ints
            chunks = [chunk if type(chunk) is bytes else bytes(chunk) for chunk in parts]
            total = sum(len(chunk) for chunk in chunks)
            if not 0 <= envelope.trace_bytes <= total:
                raise ValueError(f"trace_bytes {envelope.trace_bytes} is outside the message")
            envelope.size = total - envelope.trace_bytes
            data = envelope.to_json()
        except (ValueError, TypeError) as exc:
            return defer.fail(exc)
        if not self._running or self._stopping:
            return defer.fail(OSError(errno.ESHUTDOWN, "the spool is not running"))
        if queue_id in self._accepts:
            return defer.fail(FileExistsError(errno.EEXIST, "queue id already in use", queue_id))
        d: defer.Deferred[str] = defer.Deferred()
        self._accepts[queue_id] = _Accept(d, envelope, _head(chunks))
        with self._inflight_lock:
            self._inflight.add(queue_id)
        if self._writer is not None:
            self._writer.submit(spoolwriter.WriteItem(queue_id, data, chunks))
        elif self._helper is not None:
            self._to_writer(b"".join(spoolwriter.accept_frame(queue_id, data, chunks)))
        else:  # the writer process is being restarted
            self._answer([(queue_id, OSError(errno.EAGAIN, "the spool writer is restarting"))])
        return d

    def _answer(self, results: Sequence[tuple[str, BaseException | None]]) -> None:
        """Reactor thread: answer the accepts of a batch, then tell the subscribers."""
        if trace.TRACE is not None:
            answered = trace.now()
            for queue_id, _ in results:
                trace.TRACE.record(p="spool", id=queue_id, answer=answered)
        done = []
        recent = self._recent
        with self._inflight_lock:
            self._inflight.difference_update(queue_id for queue_id, _ in results)
        for queue_id, error in results:
            accept = self._accepts.pop(queue_id, None)
            if accept is None:
                continue
            if error is None:
                done.append(queue_id)
                if accept.head is not None:
                    recent[queue_id] = (accept.envelope, accept.head)
                accept.deferred.callback(queue_id)
            else:
                accept.deferred.errback(error)
        while len(recent) > RECENT_MESSAGES:
            del recent[next(iter(recent))]
        if not done:
            return
        for subscriber in list(self.committed):
            try:
                subscriber(done)
            except Exception:
                log.failure("spool commit subscriber {name} failed", name=repr(subscriber))

    # ------------------------------------------------------------------ the writer process
    def run_in_writer(self, op: str, args: dict[str, Any]) -> defer.Deferred[Any]:
        """Run ``op`` of :data:`mailmax.core.spool.writer.CALLS` in the writer process (only
        with ``helper=True``); fire with its result, or fail with an OSError."""
        if self._helper is None:
            return defer.fail(OSError(errno.EAGAIN, "no spool writer process"))
        number = next(self._call_numbers)
        call = _Call(defer.Deferred(), spoolwriter.call_frame(number, op, args))
        self._calls[number] = call
        self._to_writer(call.frame)
        return call.deferred

    def _to_writer(self, frame: bytes) -> None:
        assert self._helper is not None
        write_now(self._helper.pipe.pipes[0], frame)

    def _called(self, reply: dict[str, Any]) -> None:
        call = self._calls.pop(reply["call"], None)
        if call is None:
            return
        if "error" in reply:
            call.deferred.errback(OSError(*reply["error"]))
        else:
            call.deferred.callback(reply["result"])

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
        with self._inflight_lock:
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
            spoolfiles.write_file(str(tmp), [envelope.to_json()], fsync=self.fsync, free=self.free)
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
        (blocking; see :func:`mailmax.core.spool.files.remove_messages`)."""
        ids = [check_id(queue_id) for queue_id in queue_ids]
        spoolfiles.remove_messages(str(self.directory), ids, fsync=self.fsync, free=self.free)

    def remove_soon(
        self, queue_ids: Sequence[str], in_thread: Callable[..., defer.Deferred[Any]]
    ) -> defer.Deferred[Any]:
        """Remove finished messages off the reactor thread: in the writer process when there
        is one (its next messages reuse the files at once), else by ``in_thread``."""
        ids = [check_id(queue_id) for queue_id in queue_ids]
        if self._helper is None:
            return in_thread(self.remove_many, ids)
        d = self.run_in_writer("remove", {"ids": ids})
        d.addErrback(lambda _: in_thread(self.remove_many, ids))  # the writer went away
        return d
