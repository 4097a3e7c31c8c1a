"""Acceptance with virus scanning: MailMax with the antivirus plugin (a real clamd) against the
default plugin set, in the same run, at 4 KiB and C=10 / C=50.

A clamd with MailMax's test signatures is started on a unix socket in a temporary folder; two
MailMax servers are started in turn (the built-in default plugins, then the same plus
``antivirus``), each loaded with ``bench/smtp_load.py`` over persistent sessions. For each cell
the report gives msg/s, the transaction latency p50/p99, and the CPU seconds clamd and MailMax
used during the run, as a share of the run's wall time (1.0 = one core busy).

Usage::

    python bench/antivirus_accept.py                # 3 s per cell
    python bench/antivirus_accept.py --seconds 2 --concurrency 10,50 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from smtp_load import LoadConfig, run_load  # noqa: E402

from mailmax.testing import start_server  # noqa: E402
from tests.fixtures.clamd import running_clamd  # noqa: E402

DEFAULTS = ["aliases", "spamtrap", "forwarding", "monitor", "catchall"]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(port: int, concurrency: int, seconds: float, pids: dict[str, int]) -> dict:
    """One load run; its summary plus each process's CPU share over the run."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    result = run_load(
        LoadConfig(
            port=port,
            concurrency=concurrency,
            size=4096,
            seconds=seconds,
            recipient="alice@example.test",
        )
    )
    wall = time.monotonic() - started
    shares = {
        name: round((cpu_seconds(pid) - before[name]) / wall, 3) for name, pid in pids.items()
    }
    summary = result.summary()
    return {
        "msg_per_s": summary["msg_per_s"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "errors": summary["errors"],
        "cpu_share": shares,
    }


def main() -> int:
    """Run the matrix and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="10,50")
    parser.add_argument("--parallel-scans", type=int, default=4, help="the plugin's setting")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    with running_clamd() as clamd, tempfile.TemporaryDirectory(prefix="mailmax-avbench-") as tmp:
        clamd_pid = int((clamd.base / "run" / "clamd.pid").read_text())
        variants = {
            "default plugins": ([*DEFAULTS], {}),
            "default + antivirus": (
                [*DEFAULTS, "antivirus"],
                {
                    "antivirus": {
                        "clamd_socket": str(clamd.socket_path),
                        "parallel_scans": args.parallel_scans,
                    }
                },
            ),
        }
        for index, (label, (plugins, settings)) in enumerate(variants.items()):
            server = start_server(
                Path(tmp) / f"server{index}",
                plugins=plugins,
                settings=settings,
            )
            try:
                pids = {"mailmax": server.proc.pid, "clamd": clamd_pid}
                measure(server.ports["smtp"], 5, 0.5, pids)  # warm-up
                for concurrency in levels:
                    row = measure(server.ports["smtp"], concurrency, args.seconds, pids)
                    rows.append({"variant": label, "concurrency": concurrency, **row})
            finally:
                server.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'variant':22} {'C':>3} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'MailMax CPU':>11} {'clamd CPU':>9} {'errors':>6}")  # fmt: skip
    for row in rows:
        share = row["cpu_share"]
        print(
            f"{row['variant']:22} {row['concurrency']:>3} {row['msg_per_s']:>8.1f} "
            f"{row['p50_ms'] or 0:>8.2f} {row['p99_ms'] or 0:>8.2f} "
            f"{share['mailmax']:>11.2f} {share['clamd']:>9.2f} {row['errors']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
