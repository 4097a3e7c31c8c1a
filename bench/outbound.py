"""Outbound delivery throughput: messages/s from a pre-filled queue to a local receiving server.

Both servers send the same messages (one recipient each, ``--size`` bytes of body) to the same
receiver, Postfix's C ``smtp-sink`` on 127.0.0.1 (a small Python receiver where it is not
installed), which exits once it has received them all; a run is the time from releasing the
filled queue to that exit.

- **MailMax** (``twistd mailmax``, no plugins): the messages are written in the spool format
  beside its queue directory and moved into it at once while it runs; it looks up each
  domain's MX in a throwaway DNS server (twisted.names) and delivers directly (``[queue]
  remote_port`` = the sink's port).
- **Postfix** (if installed; a throwaway instance, see ``postfix_instance.py``): the messages
  are injected over SMTP while its queue manager is not running, so they wait in the incoming
  queue; then the queue manager is started (``postfix reload``). Postfix relays everything to
  ``relayhost = [127.0.0.1]:PORT`` (it has no way to use the test DNS server), so for it the
  number of destination domains changes nothing.

Both get the same session limits: ``--sessions`` in all, ``--per-destination`` per destination.
Runs with 1 and 20 destination domains by default; the report gives msg/s and the ratio
MailMax / Postfix; the full results go to ``bench/results/outbound-<date>.json``.

    python bench/outbound.py                           # 10,000 messages, 1 and 20 domains
    python bench/outbound.py --messages 2000 --runs 3 --servers mailmax
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from netutil import LOOPBACK, free_port, wait_for_smtp  # noqa: E402
from postfix_instance import MASTER_CF, PostfixInstance, postfix_available  # noqa: E402

from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient  # noqa: E402
from mailmax.core.spool.spool import Spool  # noqa: E402
from tests.fixtures.dns import dns_server  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SENDER = "bench@sender.test"


def message(index: int, recipient: str, size: int) -> bytes:
    """One test message: headers, then ``size`` bytes of 76-character lines."""
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopq.\r\n"
    body = (line * (size // len(line) + 1))[:size]
    head = (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: outbound benchmark {index}\r\n"
        f"Message-ID: <{index}.bench@sender.test>\r\n\r\n"
    ).encode()
    return head + body


def recipients(count: int, domains: int) -> list[str]:
    """``user<i>@d<i mod domains>.bench`` for every message."""
    return [f"user{i}@d{i % domains}.bench" for i in range(count)]


# ---------------------------------------------------------------------- the receiver
#: A counting SMTP receiver for machines without smtp-sink: exits after argv[2] messages.
PY_SINK = r"""
import asyncio, sys
port, wanted, seen = int(sys.argv[1]), int(sys.argv[2]), [0]
async def session(reader, writer):
    writer.write(b"220 sink ESMTP\r\n")
    data = False
    while line := await reader.readline():
        if data:
            if line == b".\r\n":
                data = False
                seen[0] += 1
                writer.write(b"250 2.0.0 Ok\r\n")
                if seen[0] >= wanted:
                    await writer.drain()
                    sys.exit(0)
            continue
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            data = True
            writer.write(b"354 go\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 Ok\r\n")
    writer.close()
async def main():
    server = await asyncio.start_server(session, "127.0.0.1", port)
    await server.serve_forever()
asyncio.run(main())
"""


@contextlib.contextmanager
def sink(count: int, receiver: str = "auto") -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A receiver on a free port that exits after ``count`` messages: smtp-sink when
    installed (``auto``) or asked for, else a small Python one."""
    port = free_port()
    if receiver == "smtp-sink" or (receiver == "auto" and os.access(SMTP_SINK, os.X_OK)):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        command = [SMTP_SINK, *user, "-M", str(count), f"{LOOPBACK}:{port}", "1024"]
    else:
        command = [sys.executable, "-c", PY_SINK, str(port), str(count)]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_smtp(LOOPBACK, port, timeout=15, alive=lambda: proc.poll() is None)
        yield port, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for the sink to exit (all messages received); the moment it did."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"not every message arrived within {timeout:g}s") from None
    return time.monotonic()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- MailMax
def write_mailmax(data: Path, dns: tuple[str, int], port: int, args: argparse.Namespace) -> Path:
    config = data / "mailmax.toml"
    config.write_text(
        "[server]\n"
        'hostname = "mailmax-bench.localdomain"\n'
        'log_file = "mailmax.log"\n'
        "[queue]\n"
        f'dns_servers = ["{dns[0]}:{dns[1]}"]\n'
        f"remote_port = {port}\n"
        f"max_sessions = {args.sessions}\n"
        f"max_retry_sessions = {args.sessions}\n"
        f"max_per_destination = {args.per_destination}\n"
        "scan_interval = 0.5\n"
        'tls = "none"\n'
        "[plugins]\n"
        "enabled = []\n"
    )
    return config


def stage_mailmax(data: Path, rcpts: list[str], size: int) -> Path:
    """Write the messages in the spool format into ``data/stage`` (moved in later)."""
    stage = data / "stage"
    (stage / "msg").mkdir(parents=True)
    (stage / "env").mkdir()
    ids = Spool(stage)
    for index, rcpt in enumerate(rcpts):
        queue_id = ids.new_id()
        body = message(index, rcpt, size)
        envelope = SpoolEnvelope(
            id=queue_id,
            sender=SENDER,
            recipients=[SpoolRecipient(rcpt, kind="relay")],
            received_at=time.time(),
            size=len(body),
            client_ip="127.0.0.1",
        )
        (stage / "msg" / queue_id).write_bytes(body)
        (stage / "env" / f"{queue_id}.json").write_bytes(envelope.to_json())
    os.sync()
    return stage


def run_mailmax(args: argparse.Namespace, domains: int, dns: tuple[str, int]) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="mailmax-bench-outbound-"))
    twistd = shutil.which("twistd") or os.path.join(os.path.dirname(sys.executable), "twistd")
    proc = None
    try:
        with sink(args.messages, args.receiver) as (port, receiver):
            config = write_mailmax(data, dns, port, args)
            stage = stage_mailmax(data, recipients(args.messages, domains), args.size)
            proc = subprocess.Popen(
                [twistd, "-n", "--pidfile=", "mailmax", "--config", str(config)],
                stdout=(data / "twistd.out").open("wb"),
                stderr=subprocess.STDOUT,
                cwd=data,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while not (data / "run" / "ports.json").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((data / "twistd.out").read_text()[-3000:])
                time.sleep(0.05)
            queue = data / "queue"
            cpu = cpu_seconds(proc.pid)
            start = time.monotonic()
            for name in os.listdir(stage / "msg"):
                os.rename(stage / "msg" / name, queue / "msg" / name)
            for name in os.listdir(stage / "env"):
                os.rename(stage / "env" / name, queue / "env" / name)
            end = wait_exit(receiver, args.timeout)
            cpu = cpu_seconds(proc.pid) - cpu
        left = len(os.listdir(data / "queue" / "env"))
        return {"seconds": end - start, "left_in_queue": left, "server_cpu_seconds": cpu}
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


# ---------------------------------------------------------------------- Postfix
class RelayingPostfix(PostfixInstance):
    """A Postfix instance relaying everything to the sink; its queue manager starts later."""

    def __init__(self, sink_port: int, args: argparse.Namespace) -> None:
        super().__init__(domain="local.invalid")
        self.sink_port = sink_port
        self.args = args

    def write_config(self) -> None:
        """main.cf with the relay host and limits; master.cf without the queue manager."""
        super().write_config()
        extra = (
            f"relayhost = [{LOOPBACK}]:{self.sink_port}\n"
            f"default_destination_concurrency_limit = {self.args.per_destination}\n"
            f"default_process_limit = {max(100, self.args.sessions)}\n"
            f"smtp_destination_concurrency_limit = {self.args.per_destination}\n"
            "in_flow_delay = 0\n"
            "smtp_tls_security_level = none\n"
        )
        with (self.config_dir / "main.cf").open("a") as handle:
            handle.write(extra)
        self._write_master(qmgr=False)

    def _write_master(self, qmgr: bool) -> None:
        lines = MASTER_CF.format(listen=f"{self.host}:{self.port}").splitlines()
        if not qmgr:
            lines = [line for line in lines if not line.startswith("qmgr")]
        (self.config_dir / "master.cf").write_text("\n".join(lines) + "\n")

    def queued(self) -> int:
        """Messages in the incoming, active and deferred queues."""
        count = 0
        for name in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(self.queue_dir / name):
                count += len(files)
        return count

    def start_queue_manager(self) -> None:
        """Add the queue manager to master.cf and reload."""
        self._write_master(qmgr=True)
        result = self._postfix("reload")
        if result.returncode != 0:
            raise RuntimeError(f"postfix reload failed: {result.stderr}")


def inject(port: int, rcpts: list[str], size: int, threads: int = 8) -> None:
    """Send the messages to Postfix over SMTP, several connections at once (a connection
    that fails is opened again and the message sent again, three times at most)."""
    errors: list[BaseException] = []

    def worker(part: list[tuple[int, str]]) -> None:
        client: smtplib.SMTP | None = None
        for index, rcpt in part:
            for attempt in range(3):
                try:
                    if client is None:
                        client = smtplib.SMTP(LOOPBACK, port, timeout=120)
                    client.sendmail(SENDER, [rcpt], message(index, rcpt, size))
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    with contextlib.suppress(Exception):
                        if client is not None:
                            client.close()
                    client = None
                    if attempt == 2:
                        errors.append(exc)
                        return
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()

    items = list(enumerate(rcpts))
    workers = [threading.Thread(target=worker, args=(items[i::threads],)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if errors:
        raise RuntimeError(f"injecting into Postfix failed: {errors[0]!r}")


def run_postfix(args: argparse.Namespace, domains: int) -> dict[str, Any]:
    with sink(args.messages, args.receiver) as (port, receiver):
        instance = RelayingPostfix(port, args)
        with instance:
            inject(instance.port, recipients(args.messages, domains), args.size)
            deadline = time.monotonic() + 120
            while instance.queued() < args.messages:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Postfix queued only {instance.queued()} messages")
                time.sleep(0.1)
            start = time.monotonic()
            instance.start_queue_manager()
            end = wait_exit(receiver, args.timeout)
            return {"seconds": end - start, "left_in_queue": instance.queued()}


# ---------------------------------------------------------------------- the report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--domains", default="1,20", help="destination domain counts")
    parser.add_argument("--size", type=int, default=4096, help="body bytes per message")
    parser.add_argument("--servers", default="mailmax,postfix")
    parser.add_argument("--sessions", type=int, default=20, help="outbound sessions in all")
    parser.add_argument("--per-destination", type=int, default=20, help="sessions per destination")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell (median reported)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    parser.add_argument(
        "--receiver",
        choices=("auto", "smtp-sink", "python"),
        default="auto",
        help="the receiving server (auto: smtp-sink when installed)",
    )
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    if "postfix" in servers and not postfix_available():
        print("Postfix is not installed: MailMax only", file=sys.stderr)
        servers.remove("postfix")
    if args.receiver == "auto" and not os.access(SMTP_SINK, os.X_OK):
        print(f"{SMTP_SINK} is missing: a Python receiver is used instead", file=sys.stderr)
    counts = [int(n) for n in args.domains.split(",")]
    zones = {
        "bench": {
            **{f"d{n}.bench": [("MX", 10, "mx.bench")] for n in range(max(counts))},
            "mx.bench": [("A", LOOPBACK)],
        }
    }
    results: dict[str, Any] = {"args": vars(args), "cells": []}
    with dns_server(zones) as dns:
        for domains in counts:
            for _ in range(args.runs):  # rounds interleave the servers
                for server in servers:
                    print(f"{server}: {args.messages} messages to {domains} domain(s)...",
                          file=sys.stderr, flush=True)  # fmt: skip
                    run = run_mailmax(args, domains, dns) if server == "mailmax" else (
                        run_postfix(args, domains)
                    )  # fmt: skip
                    run.update(server=server, domains=domains, rate=args.messages / run["seconds"])
                    cpu = run.get("server_cpu_seconds")
                    busy = f", server CPU {cpu / run['seconds']:.0%}" if cpu is not None else ""
                    print(
                        f"  {run['rate']:.0f} msg/s ({run['seconds']:.2f} s{busy})", file=sys.stderr
                    )
                    results["cells"].append(run)
    print(report(results, servers, counts))
    out = Path(args.results_dir)
    out.mkdir(exist_ok=True)
    path = out / f"outbound-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nfull results: {path}", file=sys.stderr)
    return 0


def report(results: dict[str, Any], servers: list[str], counts: list[int]) -> str:
    args = results["args"]
    lines = [
        f"## Outbound delivery, {args['messages']} messages of {args['size']} B body, "
        f"{args['sessions']} sessions ({args['per_destination']} per destination), "
        f"median of {args['runs']}",
        "",
        "| domains | " + " | ".join(f"{s} msg/s" for s in servers) + " | MailMax / Postfix |",
        "|---|" + "---|" * (len(servers) + 1),
    ]
    for domains in counts:
        rates = {}
        for server in servers:
            cell = [
                c["rate"]
                for c in results["cells"]
                if (c["server"], c["domains"]) == (server, domains)
            ]
            rates[server] = statistics.median(cell)
        ratio = (
            f"{rates['mailmax'] / rates['postfix']:.2f}x"
            if {"mailmax", "postfix"} <= rates.keys()
            else "-"
        )
        row = " | ".join(f"{rates[s]:,.0f}" for s in servers)
        lines.append(f"| {domains} | {row} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
