"""Writing accepted messages into the spool directory: worker threads and group commit.

:class:`GroupCommit` does the blocking work of :meth:`mailmax.core.spool.Spool.accept`:
``threads`` workers write and fsync the files into ``tmp/`` in parallel, a message's two files
at the same time; a commit thread takes every written message waiting (up to ``max_batch``),
renames the batch into place and fsyncs the two directories at the same time, and only then
reports the batch. So a message waits for two fsyncs in a row, not four: a crash can leave an
envelope whose message never got into place, which was never reported and is removed at
start. :class:`FreeFiles` lets the files of finished messages be reused.

With ``sync="filesystem"`` (Linux) nothing is fsynced on its own: the commit thread syncs the
queue's file system (``syncfs``), which makes durable the files written since the last sync
began and the renames made before it (:mod:`mailmax.core.spool.pipeline`, up to two syncs at
a time). Each message waits for two syncs, but a busy spool syncs about once per batch instead
of fsyncing every file and directory. A sync also writes
out whatever else is pending on that file system, so this suits a queue directory on a file
system of its own or a quiet one.

The spool runs a :class:`GroupCommit` in its own process or, by default in the server, in a
helper process (``python -m mailmax.core.spool.writer``) fed through a pipe: each message costs
a dozen small blocking system calls, and in the server process every one of them would make a
worker thread wait for the interpreter lock and the reactor thread wait for the worker.

The pipe carries frames. To the helper: ``A`` (accept: id, envelope, message), ``J`` (a call,
as JSON: Maildir deliveries and removals for the queue runner) and ``S`` (finish and stop).
From it: ``C`` (committed: id), ``E`` (failed: id, errno, text), ``J`` (a call's result) and
``X`` (stopped). When its input ends without ``S`` the server is gone: the helper exits at
once, and what it had not committed is cleaned up by the next start, as after a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from mailmax.core.spool import trace
from mailmax.core.spool.files import (
    SYNC_MODES,
    FreeFiles,
    fsync_dir,
    remove_messages,
    sync_filesystem,
    unlink,
    write_file,
)
from mailmax.core.spool.pipeline import SyncPipelineMixin

_ACCEPT = struct.Struct(">BII")  # id length, envelope length, message length
_CALL = struct.Struct(">I")  # JSON length
_COMMITTED = struct.Struct(">B")
_FAILED = struct.Struct(">BiH")  # id length, errno, text length
#: What a queue id may look like (a plain file name).
QUEUE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")


@dataclass
class WriteItem:
    """One message waiting for, or going through, a group commit."""

    queue_id: str
    envelope: bytes
    chunks: list[bytes]
    error: BaseException | None = None
    stage: str = "written"  # written -> renamed -> committed
    unwritten: int = 2  # files still being written
    read: float = 0.0  # with a trace: when the writer had the whole item
    written: float = 0.0  # with a trace: when its files were written

    @property
    def committed(self) -> bool:
        """True once the envelope is in place (and, with fsync, durable)."""
        return self.stage == "committed"


class GroupCommit(SyncPipelineMixin):
    """Worker threads write each item's files (and fsync them with ``sync="files"``); a commit
    thread puts batches in place and makes them durable.

    ``done(batch)`` is called from the commit thread after each batch with every item of it
    (committed, or with its ``error``); ``stopped()`` once :meth:`stop` has finished the work.
    """

    def __init__(
        self,
        directory: str,
        *,
        fsync: bool,
        threads: int,
        max_batch: int,
        free: FreeFiles,
        done: Callable[[list[WriteItem]], None],
        stopped: Callable[[], None],
        sync: str = "files",
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, not {sync!r}")
        self.fsync = fsync
        self.sync_filesystem = fsync and sync == "filesystem"
        #: With ``sync_filesystem``, write in the thread calling :meth:`submit` (no hand-over
        #: to a worker; for a caller that may block, like the writer process's reader).
        self.write_inline = False
        self.threads = threads
        self.max_batch = max_batch
        self.free = free
        self._done = done
        self._stopped = stopped
        self._tmp = os.path.join(directory, "tmp")
        self._msg = os.path.join(directory, "msg")
        self._env = os.path.join(directory, "env")
        self._cond = threading.Condition()
        self._writing = 0
        self._ready: list[WriteItem] = []
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._dir_sync: ThreadPoolExecutor | None = None
        self._directory = directory
        self._sync_waiters: list[Callable[[OSError | None], None]] = []
        self._finished = False

    def start(self) -> None:
        """Start the worker and commit threads."""
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="spool-write")
        if self.fsync and not self.sync_filesystem:  # the second directory's fsync
            self._dir_sync = ThreadPoolExecutor(1, thread_name_prefix="spool-dirsync")
        threading.Thread(target=self._coordinate, name="spool-commit", daemon=True).start()

    def submit(self, item: WriteItem) -> None:
        """Write ``item``; raises OSError after :meth:`stop`."""
        with self._cond:
            if self._stopping:
                raise OSError(errno.ESHUTDOWN, "the spool is not running")
            self._writing += 1
        assert self._pool is not None
        if self.sync_filesystem:  # nothing to wait for: one job writes both
            item.unwritten = 1
            if self.write_inline:
                self._write(item, None)
            else:
                self._pool.submit(self._write, item, None)
        else:
            self._pool.submit(self._write, item, True)
            self._pool.submit(self._write, item, False)

    def stop(self) -> None:
        """Commit what is already submitted, then stop (``stopped`` is called)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def paths(self, queue_id: str) -> tuple[str, str]:
        """The message and envelope file names of a queue id."""
        return os.path.join(self._msg, queue_id), os.path.join(self._env, queue_id + ".json")

    def _tmp_paths(self, queue_id: str) -> tuple[str, str]:
        tmp = os.path.join(self._tmp, queue_id)
        return tmp + ".msg", tmp + ".env"

    # ------------------------------------------------------------------ workers
    def _write(self, item: WriteItem, message: bool | None) -> None:
        """Worker thread: write and fsync the message or the envelope (None: both) of one item
        into tmp/; the last job of an item hands it (or its error) to the commit thread, which
        removes what was written of an item that failed."""
        tmp_message, tmp_envelope = self._tmp_paths(item.queue_id)
        try:
            if message is not False:
                self.write_file(tmp_message, item.chunks)
            if message is not True:
                self.write_file(tmp_envelope, [item.envelope])
        except BaseException as exc:
            item.error = item.error or exc
        finally:
            if message is not False:
                item.chunks = []
            if trace.TRACE is not None:
                item.written = trace.now()
            with self._cond:
                item.unwritten -= 1
                if not item.unwritten:
                    self._writing -= 1
                    self._ready.append(item)
                    self._cond.notify()

    def write_file(self, path: str, chunks: Sequence[bytes]) -> None:
        """See :func:`write_file` (no fsync of its own when the commit syncs the file system)."""
        write_file(path, chunks, fsync=self.fsync and not self.sync_filesystem, free=self.free)

    # ------------------------------------------------------------------ commit thread
    def after_sync(self, callback: Callable[[OSError | None], None]) -> None:
        """With ``sync="filesystem"``: call ``callback(None)`` from the commit thread once a
        sync of the queue's file system that began after this call has ended (``callback(error)``
        when it failed). Changes made on that file system before this call are then durable,
        at the cost of no disk flush of their own when messages are being committed anyway."""
        if not self.sync_filesystem:
            raise RuntimeError('after_sync needs sync="filesystem"')
        with self._cond:
            if not self._finished:
                self._sync_waiters.append(callback)
                self._cond.notify()
                return
        try:  # the commit thread is gone: sync here
            sync_filesystem(self._directory)
        except OSError as exc:
            callback(exc)
        else:
            callback(None)

    def _coordinate(self) -> None:
        """Commit thread: commit what has been written, batch after batch, then stop."""
        if self.sync_filesystem:
            self._pipeline()
        else:
            self._rounds()
        assert self._pool is not None
        self._pool.shutdown(wait=True)
        if self._dir_sync is not None:
            self._dir_sync.shutdown(wait=True)
        self._stopped()

    def _take(self, renamed: bool = False) -> tuple[list[WriteItem], list[Any]] | None:
        """Wait for work: the next batch and the sync waiters; None when it is time to stop.
        ``renamed``: a batch waits for a sync, so there is work even without new items."""
        with self._cond:
            while (
                not self._ready
                and not self._sync_waiters
                and not renamed
                and not (self._stopping and self._writing == 0)
            ):
                self._cond.wait()
            if not self._ready and not self._sync_waiters and not renamed:
                self._finished = True
                return None
            batch = self._ready[: self.max_batch]
            del self._ready[: self.max_batch]
            waiters, self._sync_waiters = self._sync_waiters, []
        return batch, waiters

    def _rounds(self) -> None:
        """``sync="files"``: rename each batch into place, fsync the directories, answer."""
        while (work := self._take()) is not None:
            batch = work[0]
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave an item unanswered
                for item in batch:
                    item.error = item.error or exc
                with contextlib.suppress(Exception):
                    self._discard(batch)
            self._done(batch)

    def _sync_now(self) -> None:
        """Sync the queue's file system (blocking; ``sync="filesystem"``)."""
        sync_filesystem(self._directory)

    def _rename(self, batch: list[WriteItem]) -> list[WriteItem]:
        """Rename the written items of ``batch`` into place, each message before its envelope;
        returns those renamed (the others have their error)."""
        exists = os.path.lexists
        for item in batch:
            if item.error is not None:
                continue
            try:
                target, envelope = self.paths(item.queue_id)
                if exists(target) or exists(envelope):
                    raise FileExistsError(errno.EEXIST, "queue id already in use", item.queue_id)
                tmp_message, tmp_envelope = self._tmp_paths(item.queue_id)
                os.rename(tmp_message, target)
                try:
                    os.rename(tmp_envelope, envelope)
                except OSError:
                    unlink(target)
                    raise
                item.stage = "renamed"
            except OSError as exc:
                item.error = exc
        return [item for item in batch if item.stage == "renamed"]

    def _commit(self, batch: list[WriteItem]) -> None:
        """``sync="files"``: rename a round of written items into place, then fsync both
        directories at the same time."""
        moved = self._rename(batch)
        try:
            if self.fsync and moved:
                assert self._dir_sync is not None
                envelopes = self._dir_sync.submit(fsync_dir, self._env)
                try:
                    fsync_dir(self._msg)
                finally:
                    envelopes.result()
            for item in moved:
                item.stage = "committed"
        except OSError as exc:
            for item in moved:
                item.error = exc
        self._discard(batch)

    def _discard(self, batch: list[WriteItem]) -> None:
        """Remove every file of the items that did not commit; a removal from the queue is
        made durable before the item is answered (it must never come back after a crash)."""
        unqueued = False
        for item in batch:
            if item.committed:
                continue
            item.error = item.error or OSError(errno.EIO, "message not committed")
            if item.stage == "renamed":  # in place but not durable: not to be delivered
                unlink(self.paths(item.queue_id)[1])
                unlink(self.paths(item.queue_id)[0])
                item.stage = "written"
                unqueued = True
            for path in self._tmp_paths(item.queue_id):
                unlink(path)
        if unqueued and self.fsync:
            with contextlib.suppress(OSError):
                fsync_dir(self._env)
                fsync_dir(self._msg)


# ---------------------------------------------------------------------- the pipe's frames
def accept_frame(queue_id: str, envelope: bytes, chunks: Sequence[bytes]) -> list[bytes]:
    """The frame asking the helper to write a message (as pieces, the chunks not copied)."""
    name = queue_id.encode("ascii")
    size = sum(len(chunk) for chunk in chunks)
    return [b"A" + _ACCEPT.pack(len(name), len(envelope), size) + name + envelope, *chunks]


#: The frame asking the helper to finish and stop.
STOP_FRAME = b"S"


def call_frame(call: int, op: str, args: dict[str, Any]) -> bytes:
    """The frame asking the helper to run ``op`` (see :data:`CALLS`) with ``args``."""
    data = json.dumps({"call": call, "op": op, "args": args}, separators=(",", ":")).encode()
    return b"J" + _CALL.pack(len(data)) + data


def _deliver(args: dict[str, Any], synced_later: Callable[[str], bool] | None) -> Any:
    from mailmax.core.store import maildir

    requests = [_request(r) for r in args["requests"]]
    return maildir.deliver_many(requests, fsync=bool(args["fsync"]), synced_later=synced_later)


def _request(r: list[Any]) -> Any:
    """A :data:`mailmax.core.store.maildir.DeliveryRequest` from its JSON form."""
    texts = (str(r[0]), str(r[1]), str(r[2]), str(r[3]))
    return (*texts, bool(r[4]), str(r[5]), int(r[6]), int(r[7]), bool(r[8]))


def runs_inline(call: Any, device: int) -> bool:
    """True for a call that never waits for the disk when the spool syncs its file system
    (``device``): removals, and hard links into Maildirs on that file system. The writer's
    reader thread runs those itself; handing them to a worker would cost more than they do."""
    if not isinstance(call, dict):
        return False
    args = call.get("args")
    if call.get("op") == "remove":
        return True
    if call.get("op") != "deliver" or not isinstance(args, dict):
        return False
    try:
        return all(r[8] is True and os.stat(str(r[0])).st_dev == device for r in args["requests"])
    except (LookupError, TypeError, OSError):
        return False


def _checked_id(queue_id: Any) -> str:
    """A queue id from a call, refused unless it is a plain file name of the spool."""
    if not isinstance(queue_id, str) or not QUEUE_ID.fullmatch(queue_id):
        raise ValueError(f"bad queue id {queue_id!r}")
    return queue_id


#: What a ``J`` frame may ask for: ``deliver`` (Maildir writes, see
#: :func:`mailmax.core.store.maildir.deliver_many`) and ``remove`` (ids: finished messages to
#: remove, see :func:`remove_messages`).
CALLS = ("deliver", "remove")


def parse_replies(buffer: bytearray) -> list[tuple[str, str, int, str]]:
    """Take every complete reply frame off the front of ``buffer``: (kind, queue id, errno,
    text); kind is ``C`` (committed), ``E`` (failed), ``J`` (a call's result: text is its
    JSON) or ``X`` (stopped)."""
    out: list[tuple[str, str, int, str]] = []
    view = memoryview(buffer)
    pos = 0
    try:
        while pos < len(buffer):
            kind = chr(buffer[pos])
            if kind == "X":
                out.append(("X", "", 0, ""))
                pos += 1
            elif kind == "J":
                if pos + 1 + _CALL.size > len(buffer):
                    break
                (size,) = _CALL.unpack_from(buffer, pos + 1)
                end = pos + 1 + _CALL.size + size
                if end > len(buffer):
                    break
                text = bytes(view[pos + 1 + _CALL.size : end]).decode("utf-8")
                out.append(("J", "", 0, text))
                pos = end
            elif kind == "C":
                if pos + 2 > len(buffer) or pos + 2 + buffer[pos + 1] > len(buffer):
                    break
                end = pos + 2 + buffer[pos + 1]
                out.append(("C", bytes(view[pos + 2 : end]).decode("ascii"), 0, ""))
                pos = end
            elif kind == "E":
                head = 1 + _FAILED.size
                if pos + head > len(buffer):
                    break
                id_len, code, text_len = _FAILED.unpack_from(buffer, pos + 1)
                end = pos + head + id_len + text_len
                if end > len(buffer):
                    break
                name = bytes(view[pos + head : pos + head + id_len]).decode("ascii")
                text = bytes(view[pos + head + id_len : end]).decode("utf-8", "replace")
                out.append(("E", name, code, text))
                pos = end
            else:
                raise ValueError(f"unexpected byte {kind!r} from the spool writer")
    finally:
        view.release()
    del buffer[:pos]
    return out


def _reply(item: WriteItem) -> bytes:
    name = item.queue_id.encode("ascii")
    if item.committed:
        return b"C" + _COMMITTED.pack(len(name)) + name
    error = item.error
    code = error.errno if isinstance(error, OSError) and error.errno else errno.EIO
    text = (str(error) or error.__class__.__name__).encode("utf-8", "replace")[:2000]
    return b"E" + _FAILED.pack(len(name), code, len(text)) + name + text


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def serve(directory: str, fsync: bool, threads: int, max_batch: int, sync: str = "files") -> int:
    """The helper process: read frames from stdin, answer on stdout (see the module text)."""
    out = sys.stdout.buffer
    out_lock = threading.Lock()
    finished = threading.Event()

    def send(data: bytes) -> None:
        with out_lock:
            out.write(data)
            out.flush()

    free = FreeFiles(os.path.join(directory, "free"), taker=True, rescan=True)
    free.load()
    writer = GroupCommit(
        directory,
        fsync=fsync,
        threads=threads,
        max_batch=max_batch,
        free=free,
        done=lambda batch: send(b"".join(_reply(item) for item in batch)),
        stopped=finished.set,
        sync=sync,
    )
    writer.write_inline = True
    writer.start()
    calls = ThreadPoolExecutor(2, thread_name_prefix="spool-call")
    # With sync="filesystem", Maildir links and removals on the queue's file system need no
    # fsync of their own: they are answered after the commit thread's next sync.
    later = writer.sync_filesystem
    device = os.stat(directory).st_dev
    table: dict[str, Callable[[dict[str, Any]], Any]] = {
        "deliver": lambda args: _deliver(
            args, (lambda path: os.stat(path).st_dev == device) if later else None
        ),
        "remove": lambda args: remove_messages(
            directory, [_checked_id(i) for i in args["ids"]], fsync=fsync and not later, free=free
        ),
    }

    def answer(call: dict[str, Any], result: Any, error: Exception | None) -> None:
        reply: dict[str, Any] = {"call": call["call"], "result": result}
        if error is not None:
            code = error.errno if isinstance(error, OSError) and error.errno else errno.EIO
            reply = {"call": call["call"], "error": [code, f"{error.__class__.__name__}: {error}"]}
        data = json.dumps(reply, separators=(",", ":")).encode()
        send(b"J" + _CALL.pack(len(data)) + data)

    def run(call: dict[str, Any]) -> None:
        try:
            result = table[call["op"]](call["args"])
        except Exception as exc:
            answer(call, None, exc)
            return
        if later:
            writer.after_sync(lambda error: answer(call, result, error))
        else:
            answer(call, result, None)

    stream = sys.stdin.buffer
    while True:
        kind = stream.read(1)
        if kind == STOP_FRAME:
            calls.shutdown(wait=True)  # their answers may wait for the commit thread's sync
            writer.stop()
            finished.wait()
            send(b"X")
            return 0
        if kind == b"J":
            size = _read_exactly(stream, _CALL.size)
            data = _read_exactly(stream, _CALL.unpack(size)[0]) if size is not None else None
            if data is None:
                os._exit(0)
            call = json.loads(data)
            if later and runs_inline(call, device):
                run(call)
            else:
                calls.submit(run, call)
            continue
        head = _read_exactly(stream, _ACCEPT.size) if kind == b"A" else None
        if head is None:
            os._exit(0)  # the server is gone (or sent garbage): stop where we are
        id_len, envelope_len, message_len = _ACCEPT.unpack(head)
        name = _read_exactly(stream, id_len)
        envelope = _read_exactly(stream, envelope_len)
        message = _read_exactly(stream, message_len)
        if name is None or envelope is None or message is None:
            os._exit(0)
        item = WriteItem(name.decode("ascii"), envelope, [message])
        if trace.TRACE is not None:
            item.read = trace.now()
        try:
            writer.submit(item)
        except OSError as exc:
            item.error = exc
            send(_reply(item))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mailmax.core.spool.writer [--no-fsync] [--sync MODE] THREADS MAX_BATCH DIR``."""
    parser = argparse.ArgumentParser(description="MailMax spool writer (started by the server)")
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--sync", choices=SYNC_MODES, default="files")
    parser.add_argument("threads", type=int)
    parser.add_argument("max_batch", type=int)
    parser.add_argument("directory")
    args = parser.parse_args(argv)
    return serve(args.directory, not args.no_fsync, args.threads, args.max_batch, args.sync)


if __name__ == "__main__":
    sys.exit(main())
