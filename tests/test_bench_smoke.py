"""The acceptance benchmark's load generator works against the Twisted floor server.

A test of the tool (bench/smtp_load.py and bench/baseline_twisted.py), never of speed (Q1: the
benchmark counts what reached the Maildir to show that nothing accepted is lost).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.fixtures.ports import free_port, wait_until

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _greets(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        return sock.recv(512).startswith(b"220")


def test_smtp_load_delivers_to_the_twisted_floor(tmp_path: Path) -> None:
    """Q1: smtp_load.py runs ~1 s against the floor, prints msg/s, and the Maildir holds them."""
    port = free_port()
    maildir = tmp_path / "Maildir"
    floor = [sys.executable, str(BENCH / "baseline_twisted.py"), "--port", str(port)]
    with (tmp_path / "floor.log").open("wb") as log:
        server = subprocess.Popen(
            [*floor, "--maildir", str(maildir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _greets(port), timeout=20, what="the Twisted floor server")
        client = [sys.executable, str(BENCH / "smtp_load.py"), "--port", str(port)]
        load = subprocess.run(
            [*client, "-c", "2", "--size", "4096", "--seconds", "1", "--max-messages", "2000"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)

    assert load.returncode == 0, load.stdout + load.stderr
    match = re.search(r"^(\d+) messages in [\d.]+ s = ([\d.]+) msg/s;", load.stdout, re.M)
    assert match, load.stdout
    completed = int(match.group(1))
    assert completed > 0
    assert float(match.group(2)) > 0
    assert "0 errors" in load.stdout
    steps = re.search(
        r"p50 per reply: MAIL ([\d.]+), RCPT ([\d.]+), DATA ([\d.]+), end of data ([\d.]+) ms",
        load.stdout,
    )
    assert steps, load.stdout
    assert all(float(value) > 0 for value in steps.groups())
    delivered = list((maildir / "new").iterdir())
    assert len(delivered) == completed
    body = delivered[0].read_bytes()
    assert b"To: <bench@example.test>" in body
    assert b"\r\n" not in body  # stored with LF line ends, as Maildir wants


def test_imap_write_benchmark_tiny_run(tmp_path: Path) -> None:
    """S3: ``bench/imap_write.py --tiny`` runs every operation against MailMax, prints a row
    with a time for each and leaves no work directory behind."""
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, str(BENCH / "imap_write.py"), "--tiny", "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for operation in (
        "APPEND (ms per message)",
        "SELECT",
        "STORE 1:* +FLAGS",
        "SEARCH FLAGGED UNSEEN",
        "STORE 1:* -FLAGS",
        "EXPUNGE",
    ):
        row = re.search(rf"^\| {re.escape(operation)} \| ([\d.]+) \|$", run.stdout, re.M)
        assert row, f"no row for {operation}:\n{run.stdout}"
        assert float(row.group(1)) > 0
    assert list(work.iterdir()) == []


def test_idle_memory_benchmark_tiny_run() -> None:
    """Q7: ``bench/idle_memory.py`` holds greeted plain and TLS sessions open against MailMax and
    reports a per-session memory figure for each kind asked for."""
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH / "idle_memory.py"),
            "--connections",
            "20",
            "--kinds",
            "smtp,imaps",
            "--settle",
            "0.2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["kind"]: row for row in json.loads(run.stdout)}
    assert set(rows) == {"smtp", "imaps"}
    for row in rows.values():
        assert row["connections"] == 20
        assert row["rss_after_kib"] > 0
