"""Crash safety of the spool (Q1): a process killed with SIGKILL at random moments while it
accepts messages never loses a message it reported as committed, and never leaves a half-written
message visible to the queue runner."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.spool.spool import Spool
from tests.test_spool_reactor import ReactorThread, running_reactor

CHILD = r"""
import sys, time
from pathlib import Path
from twisted.internet import defer, task
from mailmax.core.spool.spool import Spool
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from tests.test_spool_crash import expected_content

def main(reactor, directory, writer):
    spool = Spool(
        Path(directory), reactor=reactor, threads=4, max_batch=32, helper=writer != "threads",
        sync="filesystem" if writer == "process-syncfs" else "files",
    )
    spool.start()
    def report(queue_id):
        sys.stdout.write(queue_id + "\n")
        sys.stdout.flush()
    def one(_=None):
        rcpt = SpoolRecipient("c@d.example")
        env = SpoolEnvelope(spool.new_id(), "a@b.example", [rcpt], time.time())
        body = expected_content(env.id)
        spool.accept(env, [body[:100], body[100:]]).addCallback(report).addBoth(one)
    for _ in range(40):
        one()
    return defer.Deferred()

task.react(main, [sys.argv[1], sys.argv[2]])
"""


def expected_content(queue_id: str) -> bytes:
    """The message the child writes for ``queue_id``: 200 B to 200 KB, derived from the id."""
    size = 200 + int(queue_id[-4:], 16) * 3
    block = hashlib.sha256(queue_id.encode()).hexdigest().encode() + b"\r\n"
    head = b"Subject: " + queue_id.encode() + b"\r\n\r\n"
    return (head + block * (size // len(block) + 1))[:size]


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor to stop the reopened spool."""
    yield from running_reactor()


def run_and_kill(directory: Path, rng: random.Random, writer: str) -> list[str]:
    """Run the accepting child, SIGKILL it at a random moment; return the ids it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), writer],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout is not None
    first = child.stdout.readline()  # wait until it is committing
    assert first.endswith(b"\n"), child.stderr.read() if child.stderr else b""
    time.sleep(rng.uniform(0.05, 0.6))
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    lines = (first + rest).split(b"\n")
    return [line.decode() for line in lines[:-1]]  # the last piece may be cut short


@pytest.mark.parametrize("writer", ["threads", "process", "process-syncfs"])
def test_sigkill_at_random_moments_loses_nothing_reported(
    tmp_path: Path, reactor_thread, writer: str
) -> None:
    """Q1: after SIGKILL, every id reported committed is complete on disk and nothing
    half-written is visible once the spool is reopened (also when a writer process writes:
    it stops when the server is gone)."""
    rng = random.Random(os.getpid())
    directory = tmp_path / "queue"
    reported: set[str] = set()
    for _ in range(3):
        reported.update(run_and_kill(directory, rng, writer))
        spool = Spool(directory, reactor=reactor_thread.reactor)
        spool.start()
        try:
            pending = spool.pending_ids()
            assert reported <= set(pending), "a message reported as committed was lost"
            for queue_id in pending:
                envelope = spool.load(queue_id)
                body = spool.message_path(queue_id).read_bytes()
                assert body == expected_content(queue_id), f"{queue_id} is not complete"
                assert envelope.size == len(body)
            assert os.listdir(spool.tmp_dir) == []
            assert sorted(os.listdir(spool.msg_dir)) == pending
            assert os.listdir(spool.corrupt_dir) == []
        finally:
            reactor_thread.call(spool.stop)
    assert len(reported) > 20
