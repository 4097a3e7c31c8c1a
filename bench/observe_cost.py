"""What the activity counters, the event bus with a live trace and the event log files cost:
MailMax server CPU per accepted message, in one run, for three set-ups:

- ``off``: activity counters off, no event log files, nobody tracing;
- ``counters``: the default set-up (activity counters on, no event log files, nobody tracing);
- ``counters+logs``: the same with per-service event log files, default categories;
- ``counters+trace``: the default set-up with a live trace of every category but ``data``
  (commands and replies included) being read, as ``mailmax trace`` asks for it over the
  admin socket;
- ``admin``: the default set-up with the HTTPS admin listener on (nobody calling it);
- ``admin+metrics``: the same with ``/metrics`` read every ``--scrape-seconds`` (1 s by
  default, far more often than a Prometheus server usually scrapes).

Each set-up runs its own server; in each round every set-up runs once, the first one changing
from round to round. One run loads the server with
``bench/smtp_load.py`` (persistent sessions, 4 KiB messages) for ``--seconds`` and then waits
until every message is delivered to its Maildir, so the CPU counted (user + system of the
server process, from /proc) covers acceptance and local delivery. The report gives msg/s and
CPU milliseconds per message, median over the rounds.

Usage::

    python bench/observe_cost.py                     # 3 rounds of 3 s, C=10
    python bench/observe_cost.py --rounds 5 --seconds 4 --concurrency 20 --json
    python bench/observe_cost.py --setups off,counters,admin,admin+metrics
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from smtp_load import LoadConfig, run_load  # noqa: E402

from mailmax.core.admin import socket_path  # noqa: E402
from mailmax.core.tls import write_self_signed  # noqa: E402
from mailmax.testing import start_server  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
ALL_BUT_DATA = ["connections", "commands", "conversation", "errors", "logins", "dns", "policy",
                "deliveries"]  # fmt: skip
VARIANTS = {
    "off": {"activity": {"enabled": False}},
    "counters": {},
    "counters+logs": {"log": {"files": "per-service"}},
    "counters+trace": {},
    "admin": {"admin": {"enabled": True, "port": 0}},
    "admin+metrics": {"admin": {"enabled": True, "port": 0}},
}
DEFAULT_SETUPS = "off,counters,counters+logs,counters+trace"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def delivered(data_dir: Path) -> int:
    """Messages in alice's INBOX."""
    folder = data_dir / "mail" / "example.test" / "alice"
    return sum(len(os.listdir(folder / sub)) for sub in ("new", "cur") if (folder / sub).is_dir())


class TraceReader:
    """A live trace of every category but ``data``, read and thrown away by a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(socket_path(data_dir)))
        request = json.dumps({"categories": ALL_BUT_DATA})
        self.sock.sendall(f"trace {request}\n".encode())
        self.bytes = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while chunk := self.sock.recv(65536):
            self.bytes += len(chunk)

    def close(self) -> None:
        self.sock.close()


class MetricsScraper:
    """Reads the admin listener's ``/metrics`` every ``interval`` seconds, as Prometheus does."""

    def __init__(self, port: int, interval: float) -> None:
        self.url = f"https://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.context = ssl._create_unverified_context()  # the bench's self-signed certificate
        self.reads = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._scrape, daemon=True).start()

    def _scrape(self) -> None:
        while not self.stopped.wait(self.interval):
            with urllib.request.urlopen(self.url, context=self.context, timeout=10) as answer:
                answer.read()
            self.reads += 1

    def close(self) -> None:
        self.stopped.set()

    def cpu_ms_per_read(self, pid: int, reads: int) -> float:
        """Server CPU milliseconds per ``/metrics`` read (a new TLS connection each), over
        ``reads`` reads one after another."""
        before = cpu_seconds(pid)
        for _ in range(reads):
            with urllib.request.urlopen(self.url, context=self.context, timeout=10) as answer:
                answer.read()
        return 1000 * (cpu_seconds(pid) - before) / reads


def with_tls(folder: Path, sections: dict) -> dict:
    """``sections`` with a self-signed certificate for the admin listener, when it is on."""
    if not sections.get("admin", {}).get("enabled"):
        return sections
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    write_self_signed(cert, key, ["localhost"])
    return {**sections, "tls": {"cert": str(cert), "key": str(key)}}


def measure(server, concurrency: int, seconds: float) -> dict:
    """One load run and the delivery of what it sent; msg/s and server CPU per message."""
    pid = server.proc.pid
    before_cpu, before_count = cpu_seconds(pid), delivered(server.data_dir)
    result = run_load(
        LoadConfig(
            port=server.ports["smtp"],
            concurrency=concurrency,
            size=4096,
            seconds=seconds,
            recipient="alice@example.test",
        )
    )
    deadline = time.monotonic() + 60
    while delivered(server.data_dir) - before_count < result.completed:
        if time.monotonic() > deadline:
            raise RuntimeError("messages not delivered within 60 s")
        time.sleep(0.05)
    used = cpu_seconds(pid) - before_cpu
    return {
        "msg_per_s": result.rate,
        "messages": result.completed,
        "errors": result.errors,
        "cpu_ms_per_msg": 1000 * used / max(result.completed, 1),
    }


def main() -> int:
    """Run the rounds and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--setups", default=DEFAULT_SETUPS, help=f"comma-separated, of: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--scrape-seconds", type=float, default=1.0)
    parser.add_argument(
        "--scrape-cost", type=int, default=100, help="/metrics reads timed after the rounds"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.setups.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown or not chosen:
        parser.error(f"unknown set-up {unknown}; choose from {', '.join(VARIANTS)}")
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    servers = {}
    readers: list = []
    per_read = None
    with tempfile.TemporaryDirectory(prefix="mailmax-observe-bench-") as tmp:
        try:
            for index, name in enumerate(chosen):
                folder = Path(tmp) / f"server{index}"
                sections = with_tls(folder / "tls", VARIANTS[name])
                servers[name] = start_server(folder, sections=sections)
            if "counters+trace" in servers:
                readers.append(TraceReader(servers["counters+trace"].data_dir))
            if "admin+metrics" in servers:
                port = servers["admin+metrics"].ports["admin"]
                readers.append(MetricsScraper(port, args.scrape_seconds))
            for server in servers.values():
                measure(server, args.concurrency, 0.5)  # warm-up
            names = list(servers)
            for round_no in range(args.rounds):
                shift = round_no % len(names)  # each set-up takes its turn going first
                for name in names[shift:] + names[:shift]:
                    runs[name].append(measure(servers[name], args.concurrency, args.seconds))
            if "admin+metrics" in servers and args.scrape_cost > 0:
                scraper = readers[-1]
                scraper.close()
                pid = servers["admin+metrics"].proc.pid
                per_read = scraper.cpu_ms_per_read(pid, args.scrape_cost)
        finally:
            for reader in readers:
                reader.close()
            for server in servers.values():
                server.stop()
    summary = {
        name: {
            "msg_per_s": statistics.median(r["msg_per_s"] for r in found),
            "cpu_ms_per_msg": statistics.median(r["cpu_ms_per_msg"] for r in found),
            "messages": sum(r["messages"] for r in found),
            "errors": sum(r["errors"] for r in found),
        }
        for name, found in runs.items()
    }
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs, "metrics_read_cpu_ms": per_read},
                         indent=2))  # fmt: skip
        return 0
    base = summary[chosen[0]]["cpu_ms_per_msg"]
    print(
        f"{'set-up':16} {'msg/s':>8} {'CPU ms/msg':>10} {'vs ' + chosen[0]:>8} {'messages':>8} "
        f"{'errors':>6}"
    )
    for name, row in summary.items():
        change = 100 * (row["cpu_ms_per_msg"] / base - 1) if base else 0.0
        print(
            f"{name:16} {row['msg_per_s']:>8.1f} {row['cpu_ms_per_msg']:>10.3f} "
            f"{change:>+7.1f}% {row['messages']:>8} {row['errors']:>6}"
        )
    if per_read is not None:
        print(f"server CPU per /metrics read: {per_read:.2f} ms ({args.scrape_cost} reads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
