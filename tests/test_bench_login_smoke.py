"""The log-in latency benchmark runs (bench/login_latency.py --quick): a test of the tool, never
of speed; every cell must have completed log-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_login_latency_quick_run_reports_every_cell() -> None:
    """A6: IMAP and POP3, without and with the log-in cache, each with log-ins counted."""
    root = str(BENCH.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(BENCH / "login_latency.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line
        for line in done.stdout.splitlines()
        if line.startswith("| IMAP") or line.startswith("| POP3")
    ]
    assert [row.split(" | ")[0] for row in rows] == [
        "| IMAP, no cache",
        "| POP3, no cache",
        "| IMAP, cache warm",
        "| POP3, cache warm",
    ]
    assert all(int(row.split(" | ")[1]) > 0 for row in rows), done.stdout
