"""The mailbox reading benchmark runs end to end in its tiny mode (a test of the tool, not of
speed): MailMax serves a generated 200-message Maildir over POP3 and IMAP, every operation is
measured and reported (S2, S3).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
OPERATIONS = (
    "IMAP SELECT, no index",
    "IMAP LOGIN, new process",
    "IMAP SELECT cold",
    "IMAP FETCH 1:* (FLAGS UID)",
    "IMAP FETCH 1:* (BODY.PEEK[])",
    "POP3 RETR all",
)


def test_mailbox_benchmark_tiny_run(tmp_path: Path) -> None:
    """S2, S3: ``bench/mailbox_read.py --tiny`` prints a row with seconds for every operation,
    saves its results as JSON and leaves no work directory behind."""
    results = tmp_path / "results"
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH / "mailbox_read.py"),
            "--tiny",
            "--results-dir",
            str(results),
            "--workdir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for operation in OPERATIONS:
        pattern = rf"^\| {re.escape(operation)} \| 200 \| ([\d.]+) ±\d+% \| ([\d,-]+) \|"
        row = re.search(pattern, run.stdout, re.M)
        assert row, f"no row for {operation}:\n{run.stdout}"
        assert float(row.group(1)) > 0
    (saved,) = results.glob("mailbox-*-tiny.json")
    data = json.loads(saved.read_text())
    assert data["problems"] == []
    assert set(data["raw"]["mailmax"]) == {f"{op}|200" for op in OPERATIONS}
    assert list(work.iterdir()) == []
