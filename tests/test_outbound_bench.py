"""The outbound benchmark (bench/outbound.py) runs end to end: a test of the tool, not of speed.

MailMax only and a few messages, so it stays fast; with the Python receiver, so it runs where
Postfix (and its smtp-sink) is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "outbound.py"


def test_outbound_benchmark_delivers_every_message(tmp_path: Path) -> None:
    """S4: the benchmark's MailMax run delivers every queued message (1 and 3 domains) and
    reports a rate for each."""
    command = [sys.executable, str(BENCH), "--messages", "40", "--domains", "1,3"]
    command += ["--servers", "mailmax", "--receiver", "python", "--results-dir", str(tmp_path)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 1 |" in result.stdout and "| 3 |" in result.stdout
    (saved,) = tmp_path.glob("outbound-*.json")
    cells = json.loads(saved.read_text())["cells"]
    assert [c["domains"] for c in cells] == [1, 3]
    assert all(c["left_in_queue"] == 0 and c["rate"] > 0 for c in cells)
