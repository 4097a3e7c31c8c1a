"""The spool writer process's calls for the queue runner (S4, Q1): Maildir deliveries and
removals, run by its reader thread when they never wait for the disk, by a worker otherwise,
and answered only once they are durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailmax.core.spool import writer as spoolwriter
from mailmax.core.spool.spool import Spool
from tests.test_spool import make_envelope, message_for, reactor_thread  # noqa: F401

SHM = Path("/dev/shm")


def _link_request(root: Path, source: str, unique: str, link: bool = True) -> list:
    return [str(root), "INBOX", source, unique, True, "", 0, 0, link]


def test_runs_inline_only_calls_that_never_wait_for_the_disk(tmp_path: Path) -> None:
    """Removals and links into Maildirs on the queue's file system run in the reader thread;
    copies, other file systems, unknown roots and malformed calls go to a worker."""
    device = os.stat(tmp_path).st_dev
    (tmp_path / "box").mkdir()
    here = _link_request(tmp_path / "box", "/q/msg/1", "u1")
    assert spoolwriter.runs_inline({"op": "remove", "args": {"ids": ["a"]}}, device)
    assert spoolwriter.runs_inline({"op": "deliver", "args": {"requests": [here]}}, device)
    copy = _link_request(tmp_path / "box", "/q/msg/1", "u1", link=False)
    assert not spoolwriter.runs_inline(
        {"op": "deliver", "args": {"requests": [here, copy]}}, device
    )
    missing = _link_request(tmp_path / "nobox", "/q/msg/1", "u1")
    assert not spoolwriter.runs_inline({"op": "deliver", "args": {"requests": [missing]}}, device)
    if SHM.is_dir() and os.stat(SHM).st_dev != device:
        other = _link_request(SHM, "/q/msg/1", "u1")
        assert not spoolwriter.runs_inline({"op": "deliver", "args": {"requests": [other]}}, device)
    for bad in (None, [], {"op": "deliver"}, {"op": "deliver", "args": {"requests": [[1]]}}):
        assert not spoolwriter.runs_inline(bad, device)


@pytest.mark.parametrize("sync", ["filesystem", "files"])
def test_writer_process_links_on_its_file_system_and_copies_across(
    tmp_path: Path,
    reactor_thread,  # noqa: F811
    sync: str,
) -> None:
    """S4: a link into a Maildir beside the queue and a copy into one on another file system,
    in one call, both arrive intact; then the message is removed from the queue."""
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        raise AssertionError("this test needs /dev/shm on a file system of its own")
    s = Spool(tmp_path / "q", reactor=reactor_thread.reactor, helper=True, sync=sync)
    reactor_thread.call(s.start)
    far = Path(os.path.join(SHM, f"mailmax-test-{os.getpid()}-{sync}"))
    try:
        env = make_envelope(s)
        content = b"".join(message_for(env.id))
        reactor_thread.call(s.accept, env, message_for(env.id), timeout=30)
        source = str(s.message_path(env.id))
        near = tmp_path / "near"
        near.mkdir()
        far.mkdir()
        requests = [_link_request(near, source, "n1"), _link_request(far, source, "f1")]
        results = reactor_thread.call(
            s.run_in_writer, "deliver", {"fsync": True, "requests": requests}, timeout=30
        )
        assert [r[0] for r in results] == ["delivered", "delivered"]
        near_file, far_file = Path(results[0][1]), Path(results[1][1])
        assert near_file.read_bytes() == far_file.read_bytes() == content
        assert os.stat(near_file).st_ino == os.stat(source).st_ino  # linked
        assert os.stat(far_file).st_nlink == 1  # copied
        reactor_thread.call(s.run_in_writer, "remove", {"ids": [env.id]}, timeout=30)
        assert env.id not in s.pending_ids()
        assert near_file.read_bytes() == content
    finally:
        reactor_thread.call(s.stop)
        for path in sorted(far.rglob("*"), reverse=True) if far.exists() else []:
            path.rmdir() if path.is_dir() else path.unlink()
        if far.exists():
            far.rmdir()
