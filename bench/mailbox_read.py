"""Mailbox reading benchmark: MailMax's POP3 and IMAP against Dovecot 2.3 on the same Maildir.

Operations (Python clients ``poplib``/``imaplib``, one connection, loopback only):

* ``POP3 RETR all``: USER/PASS, STAT, RETR 1..N, QUIT.
* ``IMAP SELECT cold``: SELECT INBOX right after a restart of the server (the index exists,
  the process is new), after ``IMAP LOGIN, new process`` (timed on its own: both check an
  argon2id hash); ``IMAP SELECT, no index`` is a SELECT after the server's index of the
  mailbox was removed: the server builds it.
* ``IMAP FETCH 1:* (FLAGS UID)`` and ``IMAP FETCH 1:* (BODY.PEEK[])``, after that SELECT.

Every server reads its own hard-linked copy of one generated Maildir (4 KiB messages, flags
mixed), so the indexes never meet. Dovecot is a throwaway instance (``dovecot_instance.py``);
MailMax is set up with ``mailmax init`` and runs under ``twistd``. Each round restarts every
server before each mailbox's SELECT; the report gives the median of the rounds, the spread,
msg/s, the CPU seconds the server used (from /proc), and the ratio MailMax/Dovecot per
operation (same command, so the machine's noise hits both). Every server is stopped and the
work directory removed at the end, also on errors and Ctrl-C.

    python bench/mailbox_read.py                     # 10k and 100k mailboxes, 3 rounds
    python bench/mailbox_read.py --tiny              # 200 messages, MailMax only (a smoke run)
    python bench/mailbox_read.py --sizes 10000 --runs 5 --servers mailmax,dovecot
"""

from __future__ import annotations

import argparse
import datetime
import imaplib
import json
import os
import poplib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import maildir_gen
from dovecot_instance import DovecotInstance, dovecot_available, dovecot_version
from mailmax_instance import MailMaxInstance
from netutil import LOOPBACK
from servers import session_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
PASSWORD = "benchsecret"
CLIENT_TIMEOUT = 300.0
#: Longest wait for a server to become idle before an operation.
SETTLE_SECONDS = 10.0
#: Dovecot 2.3.19 on this machine kind (/work/shared/PERF.md), seconds: (operation, messages).
ANCHORS = {
    ("IMAP SELECT, no index", 100_000): 0.279,
    ("IMAP FETCH 1:* (FLAGS UID)", 100_000): 0.461,
    ("IMAP FETCH 1:* (BODY.PEEK[])", 10_000): 0.190,
    ("POP3 RETR all", 10_000): 1.62,
}
OPERATIONS = (
    "IMAP SELECT, no index",
    "IMAP LOGIN, new process",
    "IMAP SELECT cold",
    "IMAP FETCH 1:* (FLAGS UID)",
    "IMAP FETCH 1:* (BODY.PEEK[])",
    "POP3 RETR all",
)
#: Operations whose msg/s is worth printing (the others do not touch every message's data).
PER_MESSAGE = {"IMAP FETCH 1:* (FLAGS UID)", "IMAP FETCH 1:* (BODY.PEEK[])", "POP3 RETR all"}


def log(text: str) -> None:
    """Progress on stderr."""
    print(text, file=sys.stderr, flush=True)


def user_for(count: int) -> str:
    """The mailbox (user) holding ``count`` messages."""
    return f"bench{count}"


# ---------------------------------------------------------------------- one measurement
class Meter:
    """Measures one operation: wall seconds, client CPU, server CPU (from its session)."""

    def __init__(self, session: Callable[[], int | None]) -> None:
        self._session = session

    def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait until the server is idle: its CPU time stops growing (bounded by ``timeout``).

        Work a server does after answering (MailMax reads the message list after SELECT,
        closes indexes after LOGOUT) then counts where it happens, not in the next operation.
        """
        deadline = time.monotonic() + timeout
        sid = self._session()
        last = session_cpu_seconds(sid) if sid else None
        quiet = 0
        while last is not None and quiet < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = session_cpu_seconds(sid)
            if now is None:
                return
            quiet = quiet + 1 if now - last <= 0.011 else 0
            last = now

    def measure(self, work: Callable[[], int]) -> dict[str, float]:
        """Run ``work`` (returns how many messages it handled) and return the figures."""
        sid = self._session()
        server_before = session_cpu_seconds(sid) if sid else None
        client_before = time.process_time()
        start = time.perf_counter()
        handled = work()
        seconds = time.perf_counter() - start
        client = time.process_time() - client_before
        server_after = session_cpu_seconds(sid) if sid else None
        server = (
            server_after - server_before
            if server_before is not None and server_after is not None
            else float("nan")
        )
        return {"seconds": seconds, "client_cpu": client, "server_cpu": server, "n": handled}


def imap_login(port: int, user: str) -> imaplib.IMAP4:
    """An imaplib client logged in on the plain IMAP port."""
    client = imaplib.IMAP4(LOOPBACK, port, timeout=CLIENT_TIMEOUT)
    client.login(user, PASSWORD)
    return client


def select(client: imaplib.IMAP4, expected: int) -> int:
    """SELECT INBOX; check the message count."""
    status, data = client.select("INBOX")
    if status != "OK" or int(data[0]) != expected:
        raise RuntimeError(f"SELECT INBOX: {status} {data!r}, expected {expected} messages")
    return expected


def fetch_flags(client: imaplib.IMAP4, expected: int) -> int:
    """FETCH 1:* (FLAGS UID); check that every message answered."""
    status, data = client.fetch("1:*", "(FLAGS UID)")
    if status != "OK" or len(data) != expected:
        raise RuntimeError(f"FETCH FLAGS: {status}, {len(data)} of {expected} answers")
    return expected


def fetch_bodies(client: imaplib.IMAP4, expected: int, size: int) -> int:
    """FETCH 1:* (BODY.PEEK[]); check every message's size."""
    status, data = client.fetch("1:*", "(BODY.PEEK[])")
    bodies = [item[1] for item in data if isinstance(item, tuple)]
    if status != "OK" or len(bodies) != expected or any(len(b) != size for b in bodies):
        raise RuntimeError(f"FETCH BODY[]: {status}, {len(bodies)} of {expected} messages")
    return expected


def pop3_retr_all(port: int, user: str, expected: int, size: int) -> int:
    """USER/PASS, STAT, RETR 1..N, QUIT; check sizes."""
    client = poplib.POP3(LOOPBACK, port, timeout=CLIENT_TIMEOUT)
    try:
        client.user(user)
        client.pass_(PASSWORD)
        count, _ = client.stat()
        if count != expected:
            raise RuntimeError(f"POP3 STAT: {count} messages, expected {expected}")
        for number in range(1, count + 1):
            _, _, octets = client.retr(number)
            if octets < size:
                raise RuntimeError(f"POP3 RETR {number}: {octets} octets, expected {size}")
    finally:
        client.quit()
    return expected


# ---------------------------------------------------------------------- the run
class Bench:
    """The servers, their mailboxes and the collected figures."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.sizes: list[int] = args.sizes
        self.results: dict[str, dict[str, list[dict[str, float]]]] = {}
        self.servers: dict[str, Any] = {}
        self.problems: list[str] = []

    def record(self, server: str, operation: str, count: int, figures: dict[str, float]) -> None:
        """Keep one measurement."""
        key = f"{operation}|{count}"
        self.results.setdefault(server, {}).setdefault(key, []).append(figures)
        log(
            f"  {server:8} {operation:30} {count:>7} msgs: {figures['seconds']:8.3f} s,"
            f" server CPU {figures['server_cpu']:.3f} s, client CPU {figures['client_cpu']:.3f} s"
        )

    def setup(self) -> None:
        """Generate the Maildir once; give every server its linked copies; start them."""
        size, largest = self.args.size, max(self.sizes)
        master = self.workdir / "master"
        started = time.perf_counter()
        maildir_gen.generate(master, largest, size)
        log(
            f"generated {largest} messages of {size} bytes in {time.perf_counter() - started:.1f} s"
        )
        for name in self.args.servers:
            mailboxes = {}
            for count in self.sizes:
                target = self.workdir / f"{name}-mail" / user_for(count)
                maildir_gen.link_copy(master, target, count, size)
                mailboxes[user_for(count)] = target
            if name == "mailmax":
                server: Any = MailMaxInstance(self.workdir / "mailmax")
                server.prepare({user: (PASSWORD, path) for user, path in mailboxes.items()})
            else:
                server = DovecotInstance(
                    self.workdir / "dovecot",
                    {user: (PASSWORD, path) for user, path in mailboxes.items()},
                )
                server.prepare()
            self.servers[name] = server
            server.start()
            log(f"{name}: imap {server.port_imap}, pop3 {server.port_pop3}")

    def no_index(self, name: str, server: Any, meter: Meter) -> None:
        """SELECT of every mailbox after its index was removed: the server builds it."""
        for count in sorted(self.sizes):
            meter.settle()  # the last session is over and its folders are closed
            server.drop_index(user_for(count))
            client = imap_login(server.port_imap, user_for(count))
            try:
                figures = meter.measure(lambda c=client, n=count: select(c, n))
                self.record(name, "IMAP SELECT, no index", count, figures)
            finally:
                client.logout()

    def round(self, number: int) -> None:
        """One measurement of every operation on every server: SELECT without index, then
        (restarting before each mailbox) LOGIN, SELECT, FETCH; then POP3."""
        names = list(self.servers)
        if number % 2:
            names.reverse()
        for name in names:
            server = self.servers[name]
            meter = Meter(server.session_id)
            self.no_index(name, server, meter)
            for count in sorted(self.sizes):
                server.restart()
                meter.settle()
                opened: list[imaplib.IMAP4] = []

                def login(s: Any = server, n: int = count, out: list = opened) -> int:
                    out.append(imap_login(s.port_imap, user_for(n)))
                    return 1

                self.record(name, "IMAP LOGIN, new process", count, meter.measure(login))
                client = opened[0]
                try:
                    self.record(
                        name,
                        "IMAP SELECT cold",
                        count,
                        meter.measure(lambda c=client, n=count: select(c, n)),
                    )
                    self.record(
                        name,
                        "IMAP FETCH 1:* (FLAGS UID)",
                        count,
                        meter.measure(lambda c=client, n=count: fetch_flags(c, n)),
                    )
                    if count == self.args.body:
                        size = self.args.size
                        self.record(
                            name,
                            "IMAP FETCH 1:* (BODY.PEEK[])",
                            count,
                            meter.measure(lambda c=client, n=count, z=size: fetch_bodies(c, n, z)),
                        )
                finally:
                    client.logout()
            count, size = self.args.retr, self.args.size
            meter.settle()
            figures = meter.measure(
                lambda s=server, n=count, z=size: pop3_retr_all(s.port_pop3, user_for(n), n, z)
            )
            self.record(name, "POP3 RETR all", count, figures)

    def stop(self) -> None:
        """Stop every server (errors are collected, never raised)."""
        for name, server in self.servers.items():
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                self.problems.append(f"stopping {name}: {exc}")

    def versions(self) -> dict[str, str]:
        """What ran."""
        out = {}
        for name, server in self.servers.items():
            out[name] = server.version() if name == "mailmax" else f"Dovecot {dovecot_version()}"
        return out


# ---------------------------------------------------------------------- report
def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median seconds, spread (± half-range in % of the median), CPU medians."""
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    spread = (max(seconds) - min(seconds)) / 2 / median * 100 if median and len(runs) > 1 else 0
    return {
        "seconds": median,
        "spread": spread,
        "server_cpu": statistics.median(r["server_cpu"] for r in runs),
        "client_cpu": statistics.median(r["client_cpu"] for r in runs),
        "runs": len(runs),
    }


def report(bench: Bench) -> str:
    """The Markdown report."""
    args = bench.args
    names = list(bench.servers)
    lines = [
        "# Mailbox reading: MailMax vs Dovecot (same run)",
        "",
        f"{args.size}-byte messages, mailboxes of {', '.join(f'{n:,}' for n in bench.sizes)}; "
        f"{args.runs} round(s), median (± half-range %); loopback, Python poplib/imaplib.",
        "",
    ]
    lines += [f"- {name}: {version}" for name, version in bench.versions().items()]
    header = ["operation", "messages"]
    for name in names:
        header += [f"{name} s", f"{name} msg/s", f"{name} server CPU s"]
    if {"mailmax", "dovecot"} <= set(names):
        header.append("MailMax/Dovecot")
    header.append("PERF.md Dovecot s")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table: dict[str, Any] = {}
    for operation in OPERATIONS:
        for count in sorted(set(bench.sizes) | {args.retr}):
            row = [operation, f"{count:,}"]
            found = {}
            for name in names:
                runs = bench.results.get(name, {}).get(f"{operation}|{count}")
                if not runs:
                    row += ["-", "-", "-"]
                    continue
                found[name] = summary(runs)
                figures = found[name]
                rate = f"{count / figures['seconds']:,.0f}" if operation in PER_MESSAGE else "-"
                row += [
                    f"{figures['seconds']:.3f} ±{figures['spread']:.0f}%",
                    rate,
                    f"{figures['server_cpu']:.3f}",
                ]
            if not found:
                continue
            if {"mailmax", "dovecot"} <= set(names):
                if {"mailmax", "dovecot"} <= set(found):
                    ratio = found["mailmax"]["seconds"] / found["dovecot"]["seconds"]
                    row.append(f"**{ratio:.2f}**")
                    found["ratio"] = ratio  # type: ignore[assignment]
                else:
                    row.append("-")
            anchor = ANCHORS.get((operation, count))
            row.append(f"{anchor:.3f}" if anchor else "-")
            table[f"{operation}|{count}"] = found
            lines.append("| " + " | ".join(row) + " |")
    lines += scaling(bench, table)
    if bench.problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in bench.problems]
    bench.table = table  # type: ignore[attr-defined]
    return "\n".join(lines)


def scaling(bench: Bench, table: dict[str, Any]) -> list[str]:
    """Seconds per message at the largest mailbox over the smallest (1.0 = linear)."""
    small, large = min(bench.sizes), max(bench.sizes)
    if small == large:
        return []
    lines = [
        "",
        f"Scaling, {small:,} -> {large:,} messages: (seconds per message at {large:,}) / "
        f"(at {small:,}); 1.0 is linear, above 1 worse than linear.",
        "",
        "| operation | " + " | ".join(bench.servers) + " |",
        "|---|" + "---|" * len(bench.servers),
    ]
    for operation in (
        "IMAP SELECT, no index",
        "IMAP SELECT cold",
        "IMAP FETCH 1:* (FLAGS UID)",
    ):
        cells = []
        for name in bench.servers:
            a = table.get(f"{operation}|{small}", {}).get(name)
            b = table.get(f"{operation}|{large}", {}).get(name)
            if a and b and a["seconds"] > 0:
                cells.append(f"{(b['seconds'] / large) / (a['seconds'] / small):.2f}")
            else:
                cells.append("-")
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; ``--tiny`` overrides sizes, rounds and servers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="mailbox sizes (messages)")
    parser.add_argument("--retr", type=int, default=10_000, help="mailbox for POP3 RETR all")
    parser.add_argument("--body", type=int, default=10_000, help="mailbox for FETCH BODY[]")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--runs", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--servers", default="mailmax,dovecot")
    parser.add_argument("--tiny", action="store_true", help="200 messages, MailMax, 1 round")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the work dir")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.retr, args.body, args.runs, args.servers = "200", 200, 200, 1, "mailmax"
    args.sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in ("mailmax", "dovecot"):
            parser.error(f"unknown server {name!r} (mailmax, dovecot)")
    if args.retr not in args.sizes or args.body not in args.sizes:
        parser.error("--retr and --body must be among --sizes")
    if not 1 <= args.runs <= 20 or not all(1 <= n <= 1_000_000 for n in args.sizes):
        parser.error("--runs must be 1..20 and sizes 1..1,000,000")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report; save the raw results as JSON."""
    args = parse_args(argv)
    if "dovecot" in args.servers and not dovecot_available():
        print("dovecot is not installed: apt-get install -y dovecot-imapd dovecot-pop3d")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mailbox-bench-", dir=args.workdir))
    os.chmod(workdir, 0o755)  # Dovecot's mail processes run as nobody
    bench = Bench(args, workdir)
    started = time.monotonic()
    try:
        bench.setup()
        for number in range(args.runs):
            log(f"round {number + 1}/{args.runs}")
            bench.round(number)
    except KeyboardInterrupt:
        bench.problems.append("interrupted")
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(bench)
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"mailbox-{stamp}{'-tiny' if args.tiny else ''}.json"
    out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "versions": bench.versions(),
                "raw": bench.results,
                "summary": bench.table,  # type: ignore[attr-defined]
                "problems": bench.problems,
                "seconds": time.monotonic() - started,
            },
            indent=1,
        )
    )
    log(f"results: {out} ({time.monotonic() - started:.0f} s)")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    sys.exit(main())
