"""SMTP acceptance benchmark: MailMax against the Twisted floor, Postfix and Haraka, on loopback.

For each round (``--runs``), every server under test is started in turn on free loopback ports,
warmed up, measured over the whole matrix (concurrency x message size x session mode) with both
clients, and stopped. Each cell's figure is the median over the rounds, with its spread; the
ratios MailMax/Twisted-floor, MailMax/Postfix and MailMax/Haraka compare medians measured in the
same command.

Clients: ``smtp-source`` (Postfix's C test client; msg/s only; its message count is sized from
the rate just measured so a run lasts about ``--seconds``) and ``bench/smtp_load.py`` (asyncio;
msg/s, per-transaction latency p50/p99 and the p50 of each reply). After each run the delivered
messages are counted in the server's Maildirs (bounded wait), never removed while measuring; the
totals show that nothing was lost.

Usage::

    python bench/smtp_accept.py                 # full matrix, 3 rounds of 2.5 s runs
    python bench/smtp_accept.py --quick         # smoke run, about 40 s
    python bench/smtp_accept.py --servers floor,postfix --runs 5 --seconds 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netutil import LOOPBACK
from postfix_instance import find_smtp_source
from servers import BENCH_DIR, SERVERS, Server, spread_subdirectories, wait_delivered
from smtp_load import STEPS

CLIENTS = ("smtp-source", "smtp_load")
MODE_LABEL = {"persistent": "persistent", "per-connection": "1 msg/conn"}
SMTP_SOURCE_MAX = 200_000
SMTP_SOURCE_SPEEDUP = 1.2  # smtp-source is usually a little faster than smtp_load.py
WARMUP_MESSAGES = 40
RATIO_PAIRS = (("mailmax", "floor"), ("mailmax", "postfix"), ("mailmax", "haraka"))


@dataclass(frozen=True)
class Cell:
    """One point of the matrix."""

    concurrency: int
    size: int
    mode: str

    @property
    def label(self) -> str:
        """E.g. ``4K C=10 persistent``."""
        size = f"{self.size // 1024}K" if self.size % 1024 == 0 else f"{self.size}B"
        return f"{size} C={self.concurrency} {MODE_LABEL[self.mode]}"


QUICK_CELLS = (
    Cell(10, 4096, "persistent"),
    Cell(10, 102400, "persistent"),
    Cell(10, 4096, "per-connection"),
)


def build_cells(args: argparse.Namespace) -> list[Cell]:
    """The matrix, in measuring order (a fixed set of three cells with ``--quick``)."""
    if args.quick:
        return list(QUICK_CELLS)
    return [
        Cell(c, size, mode) for mode in args.modes for size in args.sizes for c in args.concurrency
    ]


def run_smtp_load(
    server: Server, cell: Cell, seconds: float, max_messages: int = 1_000_000
) -> dict:
    """One smtp_load.py run in a subprocess; its JSON summary plus ``accepted``."""
    argv = [
        sys.executable,
        str(BENCH_DIR / "smtp_load.py"),
        "--host",
        server.host,
        "--port",
        str(server.port),
        "-c",
        str(cell.concurrency),
        "--size",
        str(cell.size),
        "--mode",
        cell.mode,
        "--seconds",
        str(seconds),
        "--max-messages",
        str(max_messages),
        "--to",
        server.recipient,
        "--grace",
        "20",
        "--json",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 40)
    except subprocess.TimeoutExpired:
        return {"client": "smtp_load", "error": "smtp_load.py did not finish", "accepted": 0}
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {
            "client": "smtp_load",
            "error": f"rc {done.returncode}: {done.stderr.strip()[-500:]}",
            "accepted": 0,
        }
    record = {
        "client": "smtp_load",
        "msg_per_s": summary["msg_per_s"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "step_p50_ms": summary.get("step_p50_ms") or {},
        "accepted": summary["completed"],
        "elapsed_s": summary["elapsed_s"],
        "errors": summary["errors"],
    }
    if summary["errors"] or summary["aborted"]:
        record["error"] = "; ".join(summary["error_samples"]) or "aborted at the hard limit"
    return record


def run_smtp_source(server: Server, cell: Cell, seconds: float, rate_estimate: float) -> dict:
    """One smtp-source run with a count sized to last about ``seconds``; hard time limit."""
    path = find_smtp_source()
    count = int(min(SMTP_SOURCE_MAX, max(2 * cell.concurrency, rate_estimate * seconds)))
    argv = [
        path,
        "-c",
        "-s",
        str(cell.concurrency),
        "-m",
        str(count),
        "-l",
        str(cell.size),
        "-M",
        "loadgen.localdomain",
        "-f",
        "load@example.test",
        "-t",
        server.recipient,
    ]
    if cell.mode == "persistent":
        argv.append("-d")
    argv.append(f"{server.host}:{server.port}")
    limit = 4 * seconds + 10
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:  # interrupted: never leave the client running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    elapsed = time.monotonic() - start
    counted = _last_counter(out)
    record: dict = {"client": "smtp-source", "requested": count, "elapsed_s": round(elapsed, 4)}
    if proc.returncode == 0 and not timed_out:
        record.update(accepted=count, msg_per_s=round(count / elapsed, 1))
    else:
        record.update(accepted=counted, msg_per_s=round(counted / elapsed, 1))
        reason = "hit the time limit" if timed_out else f"rc {proc.returncode}"
        record["error"] = f"smtp-source {reason}: {err.decode(errors='replace').strip()[-300:]}"
    return record


def _last_counter(out: bytes) -> int:
    """The last value of smtp-source's ``-c`` running counter."""
    for token in reversed(out.replace(b"\n", b"\r").split(b"\r")):
        if token.strip().isdigit():
            return int(token)
    return 0


class Bench:
    """Runs the matrix over the servers and collects raw records."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        """Set up the servers and the cells from the command line."""
        self.args = args
        self.cells = build_cells(args)
        self.servers: list[Server] = [SERVERS[name](workdir) for name in args.servers]
        self.records: list[dict] = []
        self.problems: list[str] = []
        self.delivery: dict[str, dict] = {}
        self.versions: dict[str, str] = {}
        self.skip: dict[str, str] = {}
        self.source_rate: dict[tuple[str, Cell], float] = {}
        self.rounds: list[dict] = []

    def say(self, text: str) -> None:
        """Progress output (stderr, so stdout stays the report)."""
        print(text, file=sys.stderr, flush=True)

    def run(self) -> None:
        """All rounds; each server started, measured and stopped in turn."""
        for server in self.servers:
            reason = server.available()
            if reason:
                self.skip[server.name] = reason
                self.say(f"{server.label}: not available: {reason}")
            self.versions[server.name] = server.version()
        for round_no in range(1, self.args.runs + 1):
            for server in self.servers:
                if server.name in self.skip:
                    continue
                self.say(f"round {round_no}/{self.args.runs}: {server.label}")
                try:
                    server.start()
                except Exception as exc:
                    self.skip[server.name] = f"could not start: {exc}"
                    self.problems.append(f"{server.label} round {round_no}: could not start: {exc}")
                    self.say(f"  {server.label} could not start: {exc}")
                    continue
                try:
                    self.run_server_round(server, round_no)
                finally:
                    server.stop()

    def run_server_round(self, server: Server, round_no: int) -> None:
        """Warm up, then every cell with every client, then a final delivery check."""
        expected = 0
        warm = run_smtp_load(server, Cell(2, 4096, "persistent"), 3.0, WARMUP_MESSAGES)
        expected += warm.get("accepted", 0)
        for cell in self.cells:
            for client in self.args.clients:
                if not server.alive():
                    self.problems.append(f"{server.label} round {round_no}: server died")
                    return
                cpu_before = server.cpu_seconds()
                record = self.measure(server, cell, client)
                cpu_after = server.cpu_seconds()
                expected += record.get("accepted", 0)
                if cpu_before is not None and cpu_after is not None and record.get("accepted"):
                    record["server_cpu_s"] = round(cpu_after - cpu_before, 3)
                    record["cpu_ms_per_msg"] = round(
                        1000 * (cpu_after - cpu_before) / record["accepted"], 3
                    )
                delivered = wait_delivered(server, expected, self.args.delivery_wait)
                record.update(
                    server=server.name,
                    round=round_no,
                    cell=cell.label,
                    concurrency=cell.concurrency,
                    size=cell.size,
                    mode=cell.mode,
                    accepted_so_far=expected,
                    delivered_so_far=delivered,
                )
                self.records.append(record)
                if "error" in record:
                    self.problems.append(
                        f"{server.label} {cell.label} {client} round {round_no}: {record['error']}"
                    )
                self.say(_progress_line(record))
        delivered = wait_delivered(server, expected, self.args.final_wait)
        tally = self.delivery.setdefault(server.name, {"accepted": 0, "delivered": 0})
        tally["accepted"] += expected
        tally["delivered"] += delivered
        load = os.getloadavg()
        self.rounds.append(
            dict(server=server.name, round=round_no, accepted=expected, delivered=delivered)
            | {"loadavg_1_5_15": [round(v, 2) for v in load]}
            | {"create_ms_at_start": server.create_ms}
        )
        self.say(
            f"  delivered {delivered}/{expected} accepted messages to the Maildir;"
            f" load average {load[0]:.2f}"
        )

    def measure(self, server: Server, cell: Cell, client: str) -> dict:
        """One run of one client against one cell."""
        if client == "smtp_load":
            record = run_smtp_load(server, cell, self.args.seconds)
            if record.get("msg_per_s"):  # the freshest estimate of this server's current pace
                self.source_rate[(server.name, cell)] = record["msg_per_s"] * SMTP_SOURCE_SPEEDUP
            return record
        estimate = self.source_rate.get((server.name, cell), 200.0)
        record = run_smtp_source(server, cell, self.args.seconds, estimate)
        if record.get("msg_per_s"):
            self.source_rate[(server.name, cell)] = record["msg_per_s"]
        return record


def _progress_line(record: dict) -> str:
    lat = ""
    if record.get("p50_ms") is not None:
        lat = f" p50 {record['p50_ms']:.1f} p99 {record['p99_ms']:.1f} ms"
    err = f" ERROR {record['error'][:120]}" if "error" in record else ""
    return (
        f"  {record['cell']:<24} {record['client']:<11} {record.get('msg_per_s', 0):>8.1f} msg/s"
        f"{lat}; delivered {record['delivered_so_far']}/{record['accepted_so_far']}{err}"
    )


def summarize(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Median, spread and latency medians per (server, cell, client)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        if rec.get("msg_per_s") is None:
            continue
        groups.setdefault((rec["server"], rec["cell"], rec["client"]), []).append(rec)
    summary = {}
    for key, recs in groups.items():
        rates = [r["msg_per_s"] for r in recs]
        median = statistics.median(rates)
        entry = {
            "runs": len(rates),
            "msg_per_s": round(median, 1),
            "min": min(rates),
            "max": max(rates),
            "spread_pct": round(50 * (max(rates) - min(rates)) / median, 1) if median else None,
        }
        cpu = [r["cpu_ms_per_msg"] for r in recs if r.get("cpu_ms_per_msg") is not None]
        if cpu:
            entry["cpu_ms_per_msg"] = round(statistics.median(cpu), 3)
        p50s = [r["p50_ms"] for r in recs if r.get("p50_ms") is not None]
        p99s = [r["p99_ms"] for r in recs if r.get("p99_ms") is not None]
        if p50s:
            entry["p50_ms"] = round(statistics.median(p50s), 2)
            entry["p99_ms"] = round(statistics.median(p99s), 2)
        steps: dict[str, float] = {}
        for step in STEPS:
            values = [r["step_p50_ms"][step] for r in recs if r.get("step_p50_ms", {}).get(step)]
            if values:
                steps[step] = round(statistics.median(values), 2)
        if steps:
            entry["step_p50_ms"] = steps
        summary[key] = entry
    return summary


def ratio(summary: dict, cell: str, client: str, num: str, den: str) -> float | None:
    """``num``'s median over ``den``'s median for one cell and client."""
    a, b = summary.get((num, cell, client)), summary.get((den, cell, client))
    if not a or not b or not b["msg_per_s"]:
        return None
    return round(a["msg_per_s"] / b["msg_per_s"], 2)


def render(bench: Bench, summary: dict) -> str:
    """Markdown tables: one per client, then delivery totals and problems."""
    names = [s.name for s in bench.servers]
    labels = {s.name: s.label for s in bench.servers}
    out: list[str] = []
    titles = {
        "smtp-source": "msg/s from smtp-source (median ±half-range)",
        "smtp_load": "msg/s from smtp_load.py (median ±half-range) [txn p50/p99 ms]",
    }
    pairs = [(a, b) for a, b in RATIO_PAIRS if {a, b} <= set(names)]
    for client in bench.args.clients:
        out.append(f"\n### {titles[client]}\n")
        head = ["cell", *(labels[n] for n in names)]
        head += [f"{labels[a]}/{labels[b]}" for a, b in pairs]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for cell in bench.cells:
            row = [cell.label]
            for name in names:
                entry = summary.get((name, cell.label, client))
                row.append(_fmt_entry(entry) if entry else "-")
            for a, b in pairs:
                value = ratio(summary, cell.label, client, a, b)
                row.append(f"{value:.2f}x" if value is not None else "-")
            out.append("| " + " | ".join(row) + " |")
    if "smtp_load" in bench.args.clients:
        out += _step_table(bench, summary)
    cpu_client = bench.args.clients[-1]

    def cpu(name: str, cell: Cell) -> str:
        value = (summary.get((name, cell.label, cpu_client)) or {}).get("cpu_ms_per_msg")
        return f"{value:.2f}" if value is not None else "-"

    out += _server_table(
        bench, f"server CPU ms per accepted message (median; runs of {cpu_client})", cpu
    )
    costs = [
        f"{labels[r['server']]} {r['create_ms_at_start']:.2f}"
        for r in bench.rounds
        if r.get("create_ms_at_start") is not None
    ]
    if costs:
        out.append("\n### creating one file in the server's directory at its start, ms\n")
        out.append("- " + "; ".join(costs) + " (see bench/README.md)")
    out.append("\n### delivery (messages accepted vs found in the Maildir, all runs)\n")
    for name in names:
        tally = bench.delivery.get(name)
        if tally:
            lost = tally["accepted"] - tally["delivered"]
            out.append(
                f"- {labels[name]}: {tally['delivered']}/{tally['accepted']} delivered"
                + (f" ({lost} missing after the wait)" if lost > 0 else "")
            )
        else:
            reason = bench.skip.get(name, "no runs").splitlines()[0]
            out.append(f"- {labels[name]}: not measured ({reason})")
    if bench.problems:
        out.append("\n### problems\n")
        out += [f"- {p}" for p in bench.problems[:50]]
    return "\n".join(out)


def _server_table(bench: Bench, title: str, text: Callable[[str, Cell], str]) -> list[str]:
    """A Markdown table with a row per cell and a column per server; ``text(server, cell)``."""
    out = [f"\n### {title}\n"]
    head = ["cell", *(s.label for s in bench.servers)]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for cell in bench.cells:
        row = [cell.label, *(text(s.name, cell) for s in bench.servers)]
        out.append("| " + " | ".join(row) + " |")
    return out


def _step_table(bench: Bench, summary: dict) -> list[str]:
    """Where a transaction's time goes: the median p50 of each reply, per server and cell."""

    def steps(name: str, cell: Cell) -> str:
        found = (summary.get((name, cell.label, "smtp_load")) or {}).get("step_p50_ms", {})
        if len(found) != len(STEPS):
            return "-"
        return " / ".join(f"{found[step]:.1f}" for step in STEPS)

    title = f"p50 ms per reply from smtp_load.py ({' / '.join(STEPS)})"
    return _server_table(bench, title, steps)


def _fmt_entry(entry: dict) -> str:
    text = f"{entry['msg_per_s']:,.0f}"
    if entry["runs"] > 1 and entry["spread_pct"] is not None:
        text += f" ±{entry['spread_pct']:.0f}%"
    if "p50_ms" in entry:
        text += f" [{entry['p50_ms']:.1f}/{entry['p99_ms']:.1f}]"
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark driver."""
    parser = argparse.ArgumentParser(description="SMTP acceptance benchmark (loopback only).")
    parser.add_argument(
        "--servers",
        default="mailmax,floor,postfix,haraka",
        help=f"comma-separated, of {', '.join(SERVERS)}",
    )
    parser.add_argument("--clients", default="smtp_load,smtp-source", help="comma-separated")
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated")
    parser.add_argument("--sizes", default="4096,102400", help="body bytes, comma-separated")
    parser.add_argument("--modes", default="persistent,per-connection", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=2.5, help="length of one run")
    parser.add_argument("--runs", type=int, default=3, help="rounds (runs per cell)")
    parser.add_argument("--delivery-wait", type=float, default=5.0, help="after each run, s")
    parser.add_argument("--final-wait", type=float, default=30.0, help="after each round, s")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of every server's files (default: the temporary directory)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 fixed cells, 1 round of 1 s runs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds, args.delivery_wait, args.final_wait = 1, 1.0, 2.0, 15.0
    args.servers = _names(parser, args.servers, SERVERS)
    args.clients = _names(parser, args.clients, CLIENTS)
    args.modes = _names(parser, args.modes, MODE_LABEL)
    try:
        args.concurrency = [int(v) for v in args.concurrency.split(",")]
        args.sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        parser.error("--concurrency and --sizes take comma-separated integers")
    if not 1 <= args.runs <= 20 or not 0.2 <= args.seconds <= 60:
        parser.error("--runs must be 1..20 and --seconds 0.2..60")
    if any(not 1 <= c <= 500 for c in args.concurrency) or any(s < 0 for s in args.sizes):
        parser.error("concurrency must be 1..500 and sizes non-negative")
    if "smtp-source" in args.clients and not find_smtp_source():
        print("smtp-source not found: using smtp_load.py only", file=sys.stderr)
        args.clients = [c for c in args.clients if c != "smtp-source"]
    return args


def _names(parser: argparse.ArgumentParser, value: str, known) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown {unknown or 'empty list'}; choose from {', '.join(known)}")
    return names


def environment() -> dict:
    """Facts about the machine and software for the results file."""
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write the JSON results."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers get stopped
    started = time.strftime("%Y%m%d-%H%M%S")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(args.workdir.resolve())  # Postfix's instance too
    env = environment()
    env["workdir"] = tempfile.gettempdir()
    with tempfile.TemporaryDirectory(prefix="mailmax-bench-") as tmp:
        os.chmod(tmp, 0o755)  # Postfix's daemons (user postfix) pass through it
        env["spread_subdirectories"] = spread_subdirectories(Path(tmp))
        bench = Bench(args, Path(tmp))
        begin = time.monotonic()
        try:
            bench.run()
        finally:
            for server in bench.servers:
                server.stop()
            for server in bench.servers:
                server.cleanup()
        duration = time.monotonic() - begin
    summary = summarize(bench.records)
    report = render(bench, summary)
    print(f"## SMTP acceptance on {LOOPBACK}, {args.runs} round(s) of {args.seconds} s runs")
    for server in bench.servers:
        print(f"- {server.label}: {bench.versions.get(server.name, '?')}")
    print(f"- files under {env['workdir']}")
    print(report)
    print(f"\n(total {duration:.0f} s; load average at the end {os.getloadavg()[0]:.2f})")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"accept-{started}{'-quick' if args.quick else ''}.json"
    document = {
        "started": started,
        "duration_s": round(duration, 1),
        "environment": env | {"loadavg_end": os.getloadavg()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": bench.versions,
        "skipped": bench.skip,
        "summary": [
            {"server": s, "cell": c, "client": cl, **entry}
            for (s, c, cl), entry in sorted(summary.items())
        ],
        "ratios": {
            f"{cell.label} {client}": {
                f"{num}/{den}": ratio(summary, cell.label, client, num, den)
                for num, den in RATIO_PAIRS
            }
            for cell in bench.cells
            for client in args.clients
        },
        "delivery": bench.delivery,
        "rounds": bench.rounds,
        "problems": bench.problems,
        "records": bench.records,
    }
    out.write_text(json.dumps(document, indent=1))
    print(f"results: {out}")
    return 0 if bench.records else 1


if __name__ == "__main__":
    sys.exit(main())
