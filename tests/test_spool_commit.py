"""How the spool's group commit makes messages durable (Q1), watched call by call: what is
synced before the renames, what after, and before which 250 reply, in both sync modes."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailmax.core.spool import files as spoolfiles
from mailmax.core.spool import pipeline as spoolpipeline
from mailmax.core.spool import writer as spoolwriter
from mailmax.core.spool.spool import Spool
from tests.test_spool import accept_many, reactor_thread, thread_spool  # noqa: F401


class Events:
    """What the spool did, in order, from any thread: (kind, what) pairs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, kind: str, what: str) -> None:
        """Add one event."""
        with self._lock:
            self.events.append((kind, what))

    def watch(
        self, owner: Any, name: str, kind: str, describe: Callable[..., str] = lambda *a, **k: ""
    ) -> None:
        """Replace ``owner.name`` by a function that calls it, then records ``kind`` and
        ``describe(*args, **kwargs)``."""
        real = getattr(owner, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            self.record(kind, describe(*args, **kwargs))
            return result

        self.monkeypatch.setattr(owner, name, watched)

    def watch_renames(self) -> None:
        """Record every ``os.rename`` as ``"src -> dst"``."""
        self.watch(os, "rename", "rename", lambda src, dst: f"{src} -> {dst}")

    def index(self, event: tuple[str, str]) -> int:
        """Where ``event`` happened (the first time)."""
        return self.events.index(event)

    def fired(self, queue_id: str) -> int:
        """Where the commit of ``queue_id`` was reported."""
        return next(
            i
            for i, (kind, ids) in enumerate(self.events)
            if kind == "committed" and queue_id in ids
        )

    def count(self, kind: str, what: str | None = None) -> int:
        """How many events of ``kind`` (and ``what``) there were."""
        return sum(1 for k, w in self.events if k == kind and what in (None, w))


def test_group_commit_fsyncs_files_before_renames_and_dirs_once(
    thread_spool: Spool,  # noqa: F811
    reactor_thread,  # noqa: F811
    monkeypatch,
) -> None:
    """Q1: each file is fsynced before its rename, the message is renamed before the envelope,
    and each directory is fsynced once per batch, after its renames and before any Deferred of
    the batch fires."""
    spool = thread_spool
    events = Events(monkeypatch)
    events.watch(spoolfiles, "fdatasync", "fsync", lambda fd: os.readlink(f"/proc/self/fd/{fd}"))
    events.watch(spoolwriter, "fsync_dir", "dirsync", str)
    events.watch_renames()
    spool.committed.append(lambda ids: events.record("committed", ",".join(ids)))
    results, contents = accept_many(reactor_thread, spool, 60)
    assert all(ok for ok, _ in results)
    log = events.events
    for queue_id in contents:
        tmp_msg, tmp_env = spool.tmp_dir / f"{queue_id}.msg", spool.tmp_dir / f"{queue_id}.env"
        msg_sync = events.index(("fsync", str(tmp_msg)))
        env_sync = events.index(("fsync", str(tmp_env)))
        msg_move = events.index(("rename", f"{tmp_msg} -> {spool.message_path(queue_id)}"))
        env_move = events.index(("rename", f"{tmp_env} -> {spool.envelope_path(queue_id)}"))
        msg_dir_sync = next(
            i for i in range(msg_move, len(log)) if log[i] == ("dirsync", str(spool.msg_dir))
        )
        env_dir_sync = next(
            i for i in range(env_move, len(log)) if log[i] == ("dirsync", str(spool.env_dir))
        )
        fired = events.fired(queue_id)
        assert msg_sync < msg_move < env_move < min(msg_dir_sync, env_dir_sync)
        assert env_sync < env_move and max(msg_dir_sync, env_dir_sync) < fired
    batches = events.count("committed")
    assert events.count("dirsync", str(spool.env_dir)) == batches
    assert events.count("dirsync", str(spool.msg_dir)) == batches


def test_filesystem_sync_covers_the_files_then_the_renames_of_each_batch(
    tmp_path: Path,
    reactor_thread,  # noqa: F811
    monkeypatch,
) -> None:
    """Q1: with ``sync="filesystem"`` no file is fsynced on its own; each batch's files are
    written before a syncfs that comes before their renames, and another syncfs (which may also
    cover the next batch's files) comes after the renames and before any Deferred of the batch
    fires."""
    assert spoolfiles.syncfs_available(), "syncfs(2) must be available on this machine"
    events = Events(monkeypatch)
    real_write = spoolwriter.write_file

    def write_file(path: str, chunks, *, fsync: bool, free) -> None:
        assert not fsync
        real_write(path, chunks, fsync=fsync, free=free)
        events.record("written", path)

    monkeypatch.setattr(spoolwriter, "write_file", write_file)
    events.watch(spoolwriter, "sync_filesystem", "syncfs")
    events.watch_renames()
    spool = Spool(tmp_path / "queue", reactor=reactor_thread.reactor, threads=4, sync="filesystem")
    spool.start()
    try:
        spool.committed.append(lambda ids: events.record("committed", ",".join(ids)))
        results, contents = accept_many(reactor_thread, spool, 60)
    finally:
        reactor_thread.call(spool.stop)
    assert all(ok for ok, _ in results)
    syncs = [i for i, (kind, _) in enumerate(events.events) if kind == "syncfs"]
    for queue_id in contents:
        tmp_msg, tmp_env = spool.tmp_dir / f"{queue_id}.msg", spool.tmp_dir / f"{queue_id}.env"
        written = max(
            events.index(("written", str(tmp_msg))), events.index(("written", str(tmp_env)))
        )
        msg_move = events.index(("rename", f"{tmp_msg} -> {spool.message_path(queue_id)}"))
        env_move = events.index(("rename", f"{tmp_env} -> {spool.envelope_path(queue_id)}"))
        fired = events.fired(queue_id)
        assert any(written < s < msg_move for s in syncs), queue_id
        assert msg_move < env_move
        assert any(env_move < s < fired for s in syncs), queue_id
    assert len(syncs) <= 2 * events.count("committed")


def test_after_sync_waits_for_a_sync_of_the_file_system_begun_after_it(
    tmp_path: Path, monkeypatch
) -> None:
    """Q1/S4: a change answered through ``after_sync`` (a Maildir link, a removal) is answered
    only after a sync of the file system that began after it: the next commit's, or one of
    its own when nothing is being committed, or, once the writer stopped, one made at once."""
    events: list[str] = []
    real_syncfs = spoolwriter.sync_filesystem

    def syncfs(path) -> None:
        events.append("sync-start")
        real_syncfs(path)
        events.append("sync-end")

    monkeypatch.setattr(spoolwriter, "sync_filesystem", syncfs)
    for sub in ("tmp", "msg", "env", "free"):
        (tmp_path / sub).mkdir()
    stopped = threading.Event()
    writer = spoolwriter.GroupCommit(
        str(tmp_path),
        fsync=True,
        threads=2,
        max_batch=8,
        free=spoolfiles.FreeFiles(str(tmp_path / "free"), taker=True),
        done=lambda batch: events.append(f"committed {len(batch)}"),
        stopped=stopped.set,
        sync="filesystem",
    )
    writer.start()
    answered = threading.Event()

    def waiter(name: str):
        def called(error: OSError | None) -> None:
            events.append(f"{name} {error}")
            answered.set()

        return called

    writer.after_sync(waiter("alone"))
    assert answered.wait(10)
    assert events == ["sync-start", "sync-end", "alone None"]
    events.clear()
    answered.clear()
    writer.submit(spoolwriter.WriteItem("q1", b"{}", [b"message"]))
    writer.after_sync(waiter("with-commit"))
    assert answered.wait(10)
    start = events.index("sync-start")
    assert events.index("with-commit None") > events.index("sync-end", start)
    writer.stop()
    assert stopped.wait(10)
    events.clear()
    writer.after_sync(waiter("after-stop"))
    assert events == ["sync-start", "sync-end", "after-stop None"]


def _filesystem_writer(
    tmp_path: Path, done: Callable[[list[spoolwriter.WriteItem]], None]
) -> tuple[spoolwriter.GroupCommit, threading.Event]:
    for sub in ("tmp", "msg", "env", "free"):
        (tmp_path / sub).mkdir()
    stopped = threading.Event()
    writer = spoolwriter.GroupCommit(
        str(tmp_path),
        fsync=True,
        threads=2,
        max_batch=8,
        free=spoolfiles.FreeFiles(str(tmp_path / "free"), taker=True),
        done=done,
        stopped=stopped.set,
        sync="filesystem",
    )
    return writer, stopped


def test_a_message_written_during_a_sync_starts_the_next_sync_at_once(
    tmp_path: Path, monkeypatch
) -> None:
    """Q1: a message written while a sync runs does not wait for that sync to end: a second
    sync starts at once; still its renames come only after a sync begun after its files were
    written, and its answer only after a sync begun after its renames (with two syncs allowed
    in flight; the default is one)."""
    monkeypatch.setattr(spoolpipeline, "SYNCS_IN_FLIGHT", 2)
    events: list[str] = []
    lock = threading.Lock()
    first_sync_started = threading.Event()
    first_sync_may_end = threading.Event()
    second_sync_started = threading.Event()
    real_syncfs = spoolwriter.sync_filesystem
    syncs = iter(range(1, 1000))

    def syncfs(path) -> None:
        with lock:
            number = next(syncs)
            events.append(f"sync{number}-start")
        if number == 1:
            first_sync_started.set()
            assert first_sync_may_end.wait(10)
        if number == 2:
            second_sync_started.set()
        real_syncfs(path)
        with lock:
            events.append(f"sync{number}-end")

    def record(name: str) -> Callable[..., None]:
        def recorded(*args: Any) -> None:
            with lock:
                events.append(name)

        return recorded

    monkeypatch.setattr(spoolwriter, "sync_filesystem", syncfs)
    answered: list[str] = []
    all_answered = threading.Event()

    def done(batch: list[spoolwriter.WriteItem]) -> None:
        for item in batch:
            assert item.committed, item.error
            answered.append(item.queue_id)
            record(f"answered {item.queue_id}")()
        if len(answered) == 2:
            all_answered.set()

    writer, stopped = _filesystem_writer(tmp_path, done)
    real_rename = os.rename

    def rename(source: str, target: str) -> None:
        real_rename(source, target)
        record(f"rename {Path(target).name}")()

    monkeypatch.setattr(os, "rename", rename)
    writer.start()
    try:
        writer.submit(spoolwriter.WriteItem("q1", b"{}", [b"one"]))
        assert first_sync_started.wait(10)
        record("q2 written")()
        writer.submit(spoolwriter.WriteItem("q2", b"{}", [b"two"]))
        assert second_sync_started.wait(10), events  # sync 1 still runs
        assert "sync1-end" not in events
        first_sync_may_end.set()
        assert all_answered.wait(10), events
    finally:
        first_sync_may_end.set()
        writer.stop()
        assert stopped.wait(10)
    position = {name: index for index, name in enumerate(events)}

    def began_and_ended_between(after: str, before: str) -> bool:
        return any(
            position[after] < position[f"sync{n}-start"]
            and position.get(f"sync{n}-end", 10**6) < position[before]
            for n in range(1, 1000)
            if f"sync{n}-start" in position
        )

    assert began_and_ended_between("q2 written", "rename q2")
    assert began_and_ended_between("rename q2.json", "answered q2")
    assert began_and_ended_between("rename q1.json", "answered q1")
    assert (tmp_path / "msg" / "q2").read_bytes() == b"two"


def test_the_timing_trace_records_each_stage_of_a_commit(
    tmp_path: Path,
    reactor_thread,  # noqa: F811
    monkeypatch,
) -> None:
    """With the timing trace on, the writer records each message's stages in order and the
    spool when the answer came; with it off (the default) nothing is recorded."""
    from mailmax.core.spool import trace

    assert trace.TRACE is None  # off unless the environment asks for it
    path = tmp_path / "trace.jsonl"
    monkeypatch.setattr(trace, "TRACE", trace.StageTrace(str(path)))
    spool = Spool(tmp_path / "queue", reactor=reactor_thread.reactor, threads=2, sync="filesystem")
    spool.start()
    try:
        results, contents = accept_many(reactor_thread, spool, 5)
    finally:
        reactor_thread.call(spool.stop)
    assert all(ok for ok, _ in results)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    batches = [r for r in records if r["p"] == "writer"]
    assert sorted(i for b in batches for i in b["ids"]) == sorted(contents)
    for batch in batches:
        for read, written in zip(batch["read"], batch["written"], strict=True):
            assert read <= written <= batch["sync1"][0] <= batch["sync1"][1] <= batch["renamed"]
        assert batch["renamed"] <= batch["sync2"][0] <= batch["sync2"][1] <= batch["sent"]
    answers = {r["id"]: r["answer"] for r in records if r["p"] == "spool"}
    assert sorted(answers) == sorted(contents)
