"""The durable spool (Q1): group commit, atomic visibility, restart clean-up, envelope format."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from mailmax.core.spool import files as spoolfiles
from mailmax.core.spool import spool as spool_module
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool
from tests.fixtures.ports import wait_until
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the spool's callbacks."""
    yield from running_reactor()


def make_envelope(spool: Spool, n: int = 1) -> SpoolEnvelope:
    """An envelope with ``n`` local recipients and a fresh id."""
    return SpoolEnvelope(
        id=spool.new_id(),
        sender="alice@example.org",
        recipients=[
            SpoolRecipient(f"user{i}@example.com", mailbox=f"user{i}@example.com") for i in range(n)
        ],
        received_at=1700000000.5,
        client_ip="192.0.2.1",
        helo="client.example.org",
        params={"BODY": "8BITMIME"},
    )


def message_for(queue_id: str, size: int = 3000) -> list[bytes]:
    """A message in two chunks whose content names its queue id."""
    head = f"Received: from client by mx; id {queue_id}\r\nSubject: test\r\n\r\n".encode()
    return [head, (b"x" * 70 + b"\r\n") * (size // 72)]


@pytest.fixture(
    params=[(False, "files"), (True, "files"), (True, "filesystem")],
    ids=["threads", "process", "process-syncfs"],
)
def spool(tmp_path: Path, reactor_thread: ReactorThread, request: pytest.FixtureRequest):
    """A started spool on the helper reactor (writing in threads, or in its writer process,
    fsyncing files or syncing the file system), stopped after the test."""
    helper, sync = request.param
    s = Spool(
        tmp_path / "queue",
        reactor=reactor_thread.reactor,
        threads=4,
        max_batch=16,
        helper=helper,
        sync=sync,
    )
    reactor_thread.call(s.start)
    yield s
    reactor_thread.call(s.stop)
    assert not s.running


@pytest.fixture
def thread_spool(tmp_path: Path, reactor_thread: ReactorThread):
    """A started spool writing in threads of this process (their file operations can be
    watched), stopped after the test."""
    s = Spool(tmp_path / "queue", reactor=reactor_thread.reactor, threads=4, max_batch=16)
    s.start()
    yield s
    reactor_thread.call(s.stop)


def accept_many(rt: ReactorThread, spool: Spool, count: int) -> tuple[list, dict[str, bytes]]:
    """Start ``count`` accepts at once on the reactor; return their outcomes and contents."""
    contents: dict[str, bytes] = {}

    def start() -> defer.Deferred:
        ds = []
        for i in range(count):
            env = make_envelope(spool, 1 + i % 3)
            chunks = message_for(env.id, 500 + 97 * i)
            contents[env.id] = b"".join(chunks)
            ds.append(spool.accept(env, chunks))
        return defer.DeferredList(ds, consumeErrors=True)

    return rt.call(start, timeout=30), contents


# ---------------------------------------------------------------------- envelope format
def test_envelope_json_round_trip() -> None:
    """Q1: the envelope is JSON (never pickle) and survives a round trip, odd bytes included."""
    env = SpoolEnvelope(
        id="0123abcd",
        sender="",
        recipients=[
            SpoolRecipient("a@example.com", mailbox="a@example.com", params={"NOTIFY": "FAILURE"}),
            SpoolRecipient("b@remote.example", kind="relay", state="deferred", attempts=2),
        ],
        received_at=1.25,
        auth_user="a@example.com",
        helo="h\udcff",
    )
    data = env.to_json()
    assert json.loads(data)["version"] == 1
    assert SpoolEnvelope.from_json(data) == env


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("sender"), "'sender' is missing"),
        (lambda d: d.update(size="12"), "'size' has the wrong type"),
        (lambda d: d.update(version=99), "unsupported envelope format version"),
        (lambda d: d.update(id="../etc/passwd"), "invalid queue id"),
        (lambda d: d["recipients"][0].update(state="lost"), "'state' is 'lost'"),
        (lambda d: d["recipients"][0].update(kind="pipe"), "'kind' is 'pipe'"),
        (lambda d: d["recipients"][0].update(attempts=True), "'attempts' has the wrong type"),
        (lambda d: d.update(params={"RET": 1}), "must map strings to strings"),
        (lambda d: d.update(recipients={}), "'recipients' has the wrong type"),
    ],
)
def test_envelope_validation_names_the_problem(mutate, message) -> None:
    """Q1: a damaged envelope file is refused with a message naming the bad field."""
    data = json.loads(make_envelope(Spool(Path("/nonexistent"))).to_json())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        SpoolEnvelope.from_json(json.dumps(data).encode())


def test_envelope_rejects_non_json() -> None:
    """Q1: garbage in an envelope file is a ValueError, not a crash."""
    with pytest.raises(ValueError, match="not valid JSON"):
        SpoolEnvelope.from_json(b"\x80\x03pickle")


def test_new_ids_are_unique_sorted_and_file_safe(tmp_path: Path) -> None:
    """Q1: queue ids never repeat, sort by creation time and are plain file names."""
    s = Spool(tmp_path)
    ids: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        local = [s.new_id() for _ in range(2000)]
        with lock:
            ids.extend(local)

    workers = [threading.Thread(target=make) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(set(ids)) == len(ids) == 8000
    sequential = [s.new_id() for _ in range(100)]
    assert sequential == sorted(sequential)
    assert all(i.isalnum() and len(i) == 18 for i in ids)


# ---------------------------------------------------------------------- accept
def test_accept_stores_exact_message_and_envelope(spool: Spool, reactor_thread) -> None:
    """Q1: an accepted message is stored byte for byte with its envelope; tmp/ is left empty."""
    seen: list[list[str]] = []
    spool.committed.append(seen.append)
    env = make_envelope(spool, 2)
    chunks = message_for(env.id)
    queue_id = reactor_thread.call(spool.accept, env, chunks)
    assert queue_id == env.id
    assert spool.message_path(queue_id).read_bytes() == b"".join(chunks)
    loaded = spool.load(queue_id)
    assert loaded.size == len(b"".join(chunks))
    assert [r.address for r in loaded.recipients] == ["user0@example.com", "user1@example.com"]
    assert loaded.params == {"BODY": "8BITMIME"}
    assert spool.pending_ids() == [queue_id]
    assert seen == [[queue_id]]
    assert os.listdir(spool.tmp_dir) == []
    assert oct(spool.message_path(queue_id).stat().st_mode & 0o777) == "0o600"


def test_many_concurrent_accepts_group_commit(spool: Spool, reactor_thread) -> None:
    """Q1: 400 concurrent accepts all fire, all files are complete, batches cover several."""
    batches: list[list[str]] = []
    spool.committed.append(batches.append)
    results, contents = accept_many(reactor_thread, spool, 400)
    assert all(ok for ok, _ in results)
    ids = [value for _, value in results]
    assert sorted(ids) == sorted(contents)
    assert spool.pending_ids() == sorted(contents)
    for queue_id, content in contents.items():
        assert spool.message_path(queue_id).read_bytes() == content
        assert spool.load(queue_id).size == len(content)
    assert os.listdir(spool.tmp_dir) == []
    assert sorted(i for batch in batches for i in batch) == sorted(contents)
    assert len(batches) < 400, "every message was committed on its own: no group commit"
    if not spool.helper:  # a writer process's answers to two batches may arrive as one read
        assert max(len(b) for b in batches) <= spool.max_batch


def test_failed_write_errbacks_oserror_and_leaves_nothing_visible(
    spool: Spool, reactor_thread
) -> None:
    """Q1: a real write failure (a directory where the file should be) answers with an OSError;
    the other messages of the batch still commit, and no trace of the failed one is visible."""
    bad = make_envelope(spool)
    (spool.tmp_dir / f"{bad.id}.env").mkdir()
    good = make_envelope(spool)

    def both() -> defer.Deferred:
        return defer.DeferredList(
            [spool.accept(bad, message_for(bad.id)), spool.accept(good, message_for(good.id))],
            consumeErrors=True,
        )

    (bad_ok, failure), (good_ok, good_id) = reactor_thread.call(both)
    assert not bad_ok and failure.check(OSError)
    assert good_ok and good_id == good.id
    assert spool.pending_ids() == [good.id]
    assert not spool.message_path(bad.id).exists()
    assert os.listdir(spool.tmp_dir) == [f"{bad.id}.env"]  # only our obstacle


def test_rename_failure_errbacks_and_nothing_half_visible(spool: Spool, reactor_thread) -> None:
    """Q1: when the envelope cannot be put in place, the message file is taken back too."""
    env = make_envelope(spool)
    spool.envelope_path(env.id).mkdir()
    (spool.envelope_path(env.id) / "block").write_text("x")
    with pytest.raises(OSError):
        reactor_thread.call(spool.accept, env, message_for(env.id))
    assert not spool.message_path(env.id).exists()
    assert os.listdir(spool.tmp_dir) == []


def test_duplicate_id_is_refused(spool: Spool, reactor_thread) -> None:
    """Q1: an id already queued is never overwritten."""
    env = make_envelope(spool)
    reactor_thread.call(spool.accept, env, [b"first\r\n"])
    with pytest.raises(FileExistsError):
        reactor_thread.call(spool.accept, env, [b"second\r\n"])
    assert spool.message_path(env.id).read_bytes() == b"first\r\n"


def test_stop_commits_queued_accepts_then_refuses(tmp_path: Path, reactor_thread) -> None:
    """Q1: stop() lets queued accepts finish; later accepts fail with an OSError (451)."""
    s = Spool(tmp_path / "q", reactor=reactor_thread.reactor, max_batch=2, fsync=False)
    s.start()

    def accept_and_stop() -> defer.Deferred:
        ds = [s.accept(make_envelope(s), [b"m\r\n"]) for _ in range(10)]
        return s.stop().addCallback(lambda _: defer.DeferredList(ds))

    results = reactor_thread.call(accept_and_stop)
    assert all(ok for ok, _ in results) and len(s.pending_ids()) == 10
    with pytest.raises(OSError, match="not running"):
        reactor_thread.call(s.accept, make_envelope(s), [b"late\r\n"])


# ---------------------------------------------------------------------- runner side
def test_save_load_remove(spool: Spool, reactor_thread) -> None:
    """Q1: the runner's envelope rewrite is atomic and remove() takes the message away."""
    env = make_envelope(spool, 2)
    reactor_thread.call(spool.accept, env, [b"body\r\n"])
    env.recipients[0].state = "delivered"
    env.recipients[1].attempts = 1
    spool.save(env)
    assert spool.load(env.id).recipients[0].state == "delivered"
    assert spool.load(env.id).recipients[1].attempts == 1
    assert os.listdir(spool.tmp_dir) == []
    spool.remove(env.id)
    assert spool.pending_ids() == []
    assert not spool.message_path(env.id).exists()
    with pytest.raises(FileNotFoundError):
        spool.load(env.id)


def test_remove_many_takes_envelopes_first_with_one_directory_fsync(
    spool: Spool, reactor_thread, monkeypatch
) -> None:
    """Q1: a batch of finished messages leaves the queue with one fsync of env/, made after
    every envelope is gone and before any message file goes; other messages stay."""
    results, contents = accept_many(reactor_thread, spool, 6)
    assert all(ok for ok, _ in results)
    ids = sorted(contents)
    events: list[str] = []
    real_dir = spoolfiles.fsync_dir

    def sync_dir(path: Path) -> None:
        real_dir(path)
        left = [i for i in ids[:4] if spool.message_path(i).exists()]
        gone = [i for i in ids[:4] if not spool.envelope_path(i).exists()]
        events.append(f"{Path(path).name} envelopes-gone={len(gone)} messages-left={len(left)}")

    monkeypatch.setattr(spoolfiles, "fsync_dir", sync_dir)
    spool.remove_many(ids[:4])
    assert events == ["env envelopes-gone=4 messages-left=4"]
    assert spool.pending_ids() == ids[4:]
    assert not any(spool.message_path(i).exists() for i in ids[:4])
    spool.remove_many([])
    assert len(events) == 1
    with pytest.raises(ValueError):
        spool.remove_many(["../x"])


def test_remove_soon_removes_off_the_reactor_and_keeps_the_files_for_reuse(
    spool: Spool, reactor_thread
) -> None:
    """Q1: the queue runner's removals run in the writer process when there is one (else in a
    thread): the finished messages leave the queue, the others stay, and their files wait in
    free/ to become the next messages' files; a bad id is refused before anything is done."""
    results, contents = accept_many(reactor_thread, spool, 5)
    assert all(ok for ok, _ in results)
    ids = sorted(contents)
    inodes = {os.stat(spool.message_path(i)).st_ino for i in ids[:3]}
    in_thread = partial(threads.deferToThreadPool, reactor_thread.reactor, ThreadPool(1, 1))
    pool = in_thread.args[1]
    pool.start()
    try:
        reactor_thread.call(lambda: spool.remove_soon(ids[:3], in_thread), timeout=30)
        assert spool.pending_ids() == ids[3:]
        assert not any(spool.message_path(i).exists() for i in ids[:3])
        free = {os.stat(spool.free_dir / name).st_ino for name in os.listdir(spool.free_dir)}
        assert inodes <= free
        with pytest.raises(ValueError):
            spool.remove_soon(["../x"], in_thread)
        _, more = accept_many(reactor_thread, spool, 3)
        reused = {os.stat(spool.message_path(i)).st_ino for i in more} & inodes
        assert reused  # the writer takes from free/ at once
        assert all(spool.message_path(i).read_bytes() == more[i] for i in more)
    finally:
        pool.stop()


def test_files_of_finished_messages_are_reused_not_recreated(
    tmp_path: Path, reactor_thread, monkeypatch
) -> None:
    """Q1: the small files of removed messages wait in free/ and become the next messages'
    files (same inodes, exact new contents); big ones are unlinked; free/ stays bounded,
    also across a restart."""
    monkeypatch.setattr(spoolfiles, "FREE_FILES", 4)
    s = Spool(tmp_path / "q", reactor=reactor_thread.reactor, max_batch=4)
    s.start()
    try:
        first = [make_envelope(s) for _ in range(3)]
        for env in first:
            reactor_thread.call(s.accept, env, message_for(env.id, 6000))
        big = make_envelope(s)
        reactor_thread.call(s.accept, big, [b"x" * (spoolfiles.FREE_FILE_MAX_BYTES + 1)])
        inodes = {os.stat(s.message_path(e.id)).st_ino for e in first}
        inodes |= {os.stat(s.envelope_path(e.id)).st_ino for e in [*first, big]}
        big_inode = os.stat(s.message_path(big.id)).st_ino
        s.remove_many([e.id for e in first] + [big.id])
        free = {os.stat(s.free_dir / name).st_ino for name in os.listdir(s.free_dir)}
        assert len(free) == 4 and big_inode not in free  # bounded, and no big files kept
        assert s.pending_ids() == []
        second = [make_envelope(s) for _ in range(2)]
        for env in second:
            reactor_thread.call(s.accept, env, message_for(env.id, 700))
        reused = {os.stat(s.message_path(e.id)).st_ino for e in second}
        reused |= {os.stat(s.envelope_path(e.id)).st_ino for e in second}
        assert reused <= inodes and len(reused) == 4
        assert os.listdir(s.free_dir) == []
        for env in second:
            assert s.message_path(env.id).read_bytes() == b"".join(message_for(env.id, 700))
            assert s.load(env.id).id == env.id
        s.remove_many([e.id for e in second])
    finally:
        reactor_thread.call(s.stop)
    (s.free_dir / "stray").write_bytes(b"left by an older run")
    s.start()
    try:
        assert len(os.listdir(s.free_dir)) == 4 and os.listdir(s.tmp_dir) == []
    finally:
        reactor_thread.call(s.stop)


def test_just_committed_envelope_and_header_are_handed_over_once(
    spool: Spool, reactor_thread
) -> None:
    """Q1: the queue runner gets a just-committed message's envelope and header from memory,
    equal to what is on disk, once; a message whose header is too long is read from disk."""
    env = make_envelope(spool, 2)
    chunks = [b"Received: from a by b; id 1\r\n", b"Subject: x\r\n\r\nbody\r\n"]
    reactor_thread.call(spool.accept, env, chunks)
    envelope, head = reactor_thread.call(spool.take_recent, env.id)
    assert head == b"Received: from a by b; id 1\r\nSubject: x\r\n\r\n"
    assert envelope.to_json() == spool.load(env.id).to_json()
    envelope.recipients[0].state = "delivered"  # the caller's copy
    assert reactor_thread.call(spool.take_recent, env.id) is None
    long_header = make_envelope(spool)
    big = b"X-Long: " + b"y" * spool_module.RECENT_HEAD_BYTES + b"\r\n\r\nbody"
    reactor_thread.call(spool.accept, long_header, [big])
    assert reactor_thread.call(spool.take_recent, long_header.id) is None
    assert spool.message_path(long_header.id).read_bytes() == big


def test_a_writer_process_that_dies_fails_its_accepts_and_is_replaced(
    tmp_path: Path, reactor_thread
) -> None:
    """Q1: when the writer process dies, the accepts it had not answered are settled: those
    complete on disk are made durable and reported committed, the others removed and failed
    with an OSError (the client gets a 451 and sends again); a new writer takes over."""
    s = Spool(tmp_path / "q", reactor=reactor_thread.reactor, helper=True)
    reactor_thread.call(s.start)
    try:
        first = s.writer_pid
        assert first is not None

        envelopes = []

        def accept_and_kill() -> defer.Deferred:
            envelopes.extend(make_envelope(s) for _ in range(30))
            ds = [s.accept(env, message_for(env.id, 20000)) for env in envelopes]
            os.kill(first, signal.SIGKILL)
            return defer.DeferredList(ds, consumeErrors=True)

        results = reactor_thread.call(accept_and_kill, timeout=30)
        failed = [r for ok, r in results if not ok]
        assert all(f.check(OSError) for f in failed)
        for env, (ok, _) in zip(envelopes, results, strict=True):
            if not ok:  # settled before the answer: nothing of it can ever be delivered
                assert not s.message_path(env.id).exists()
                assert not s.envelope_path(env.id).exists()
        committed = [r for ok, r in results if ok]
        assert set(committed) <= set(s.pending_ids())
        for queue_id in committed:
            assert s.message_path(queue_id).read_bytes() == b"".join(message_for(queue_id, 20000))
        wait_until(lambda: s.writer_pid not in (None, first), 10, "a new writer process")
        env = make_envelope(s)
        assert reactor_thread.call(s.accept, env, [b"after\r\n"]) == env.id
    finally:
        reactor_thread.call(s.stop)
    assert not s.running


def test_a_big_message_goes_to_the_writer_process_in_one_write(
    tmp_path: Path, reactor_thread
) -> None:
    """Q1: the pipe to the writer process is widened, so a message of several hundred KiB
    leaves in the write that sends it (nothing left buffered for later turns of the
    reactor), and is stored intact."""
    s = Spool(tmp_path / "q", reactor=reactor_thread.reactor, helper=True)
    reactor_thread.call(s.start)
    try:
        pipe = s._helper.pipe.pipes[0]
        assert fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) >= 512 * 1024
        env = make_envelope(s)
        message = message_for(env.id, 600 * 1024)

        def accept() -> defer.Deferred:
            d = s.accept(env, message)
            assert not pipe.dataBuffer and not pipe._tempDataBuffer  # all of it written
            return d

        assert reactor_thread.call(accept, timeout=30) == env.id
        assert s.message_path(env.id).read_bytes() == b"".join(message)
    finally:
        reactor_thread.call(s.stop)


@pytest.mark.parametrize(
    ("chunks", "head"),
    [
        ([b"A: b\r\n", b"C: d\r\n\r\nbody\n\nmore"], b"A: b\r\nC: d\r\n\r\n"),
        ([b"A: b\r\nC: d\n\nx\r\n\r\n"], b"A: b\r\nC: d\n\n"),
        ([b"A: b\r\n\r", b"\nbody\n\n"], b"A: b\r\n\r\n"),
        ([b"\r\nbody"], b"\r\n"),
        ([b"A: b\r\n", b"x" * 70000], None),
    ],
)
def test_the_header_kept_in_memory_ends_at_the_first_empty_line(
    chunks: list[bytes], head: bytes | None
) -> None:
    """Q1: the header handed to the queue runner ends at the first empty line (CRLF or bare
    LF), wherever the chunks split it, and nothing of the body after it counts."""
    assert spool_module._head(chunks) == head


def test_load_refuses_bad_ids(spool: Spool) -> None:
    """Q1: ids that are not plain file names never reach the file system."""
    for bad in ("../x", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(ValueError):
            spool.message_path(bad)


def test_start_cleans_leftovers_of_a_crash(tmp_path: Path, reactor_thread) -> None:
    """Q1: on start, tmp files and the halves of commits cut short (a message without its
    envelope, an envelope without its message) disappear; complete messages stay queued."""
    s = Spool(tmp_path / "q", fsync=False, reactor=reactor_thread.reactor)
    for sub in ("tmp", "msg", "env"):
        (s.directory / sub).mkdir(parents=True)
    complete, orphan, lonely = s.new_id(), s.new_id(), s.new_id()
    (s.tmp_dir / f"{s.new_id()}.msg").write_bytes(b"half")
    (s.msg_dir / complete).write_bytes(b"whole\r\n")
    (s.env_dir / f"{complete}.json").write_bytes(
        SpoolEnvelope(complete, "a@b.example", [SpoolRecipient("c@d.example")], 1.0).to_json()
    )
    (s.msg_dir / orphan).write_bytes(b"renamed but no envelope")
    (s.env_dir / f"{lonely}.json").write_bytes(b"{}")
    s.start()
    try:
        assert os.listdir(s.tmp_dir) == []
        assert s.pending_ids() == [complete]
        assert not (s.msg_dir / orphan).exists()
        assert not (s.env_dir / f"{lonely}.json").exists()
        assert os.listdir(s.corrupt_dir) == []
    finally:
        reactor_thread.call(s.stop)


def test_accept_takes_a_single_bytes_object_as_one_chunk(spool: Spool, reactor_thread) -> None:
    """Q1: passing the message as one bytes object stores it unchanged (not as a list of ints)."""
    env = make_envelope(spool)
    reactor_thread.call(spool.accept, env, b"Subject: whole\r\n\r\nbody\r\n")
    assert spool.message_path(env.id).read_bytes() == b"Subject: whole\r\n\r\nbody\r\n"


def test_a_second_user_of_the_queue_directory_is_refused(spool: Spool, reactor_thread) -> None:
    """Q1: a second spool (another server on the same data directory) cannot start, since its
    start-up clean-up would remove the first one's messages in flight."""
    other = Spool(spool.directory, reactor=reactor_thread.reactor)
    with pytest.raises(OSError, match="in use by another MailMax process"):
        other.start()
    reactor_thread.call(spool.stop)
    other.start()  # free once the first one stopped
    reactor_thread.call(other.stop)


def test_free_files_never_hand_one_file_to_two_writers(tmp_path: Path) -> None:
    """Q1: writers taking and releasing free files at once, while a rescan lists files being
    released, never get the same file (two messages in one inode would mix their bytes)."""
    free_dir, work = tmp_path / "free", tmp_path / "tmp"
    free_dir.mkdir()
    work.mkdir()
    for i in range(4):
        (free_dir / f"seed-{i}").write_bytes(b"x")
    free = spoolfiles.FreeFiles(str(free_dir), taker=True, rescan=True)
    free.load()
    monkey_interval = spoolfiles.FREE_RESCAN_SECONDS
    spoolfiles.FREE_RESCAN_SECONDS = 0.0
    held: set[int] = set()
    lock = threading.Lock()
    problems: list[str] = []

    def writer(n: int) -> None:
        for i in range(300):
            path = str(work / f"{n}-{i}")
            fd = free.take(path)
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            inode = os.fstat(fd).st_ino
            with lock:
                if inode in held:
                    problems.append(f"inode {inode} handed out twice")
                held.add(inode)
            os.write(fd, b"message %d %d" % (n, i))
            os.close(fd)
            with lock:
                held.discard(inode)
            free.release(path)

    try:
        workers = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
    finally:
        spoolfiles.FREE_RESCAN_SECONDS = monkey_interval
    assert problems == []
    assert os.listdir(work) == []
    assert 0 < len(os.listdir(free_dir)) <= spoolfiles.FREE_FILES
