"""IMAP write benchmark: MailMax against Dovecot 2.3, same command, interleaved rounds.

Operations (Python ``imaplib``, one connection, loopback, plain IMAP):

* ``APPEND loop``: N APPENDs of a 4 KiB message to an empty folder, one after another
  (no SELECT), timed per message.
* On a generated INBOX of ``--messages`` messages, after a SELECT:
  ``STORE 1:* +FLAGS (\\Flagged)``, ``SEARCH FLAGGED UNSEEN``, ``STORE 1:* -FLAGS (\\Flagged)``,
  and ``EXPUNGE`` of ``--expunge`` messages marked ``\\Deleted``.

Every server gets its own hard-linked copy of the generated Maildir. Rounds alternate the
server order so the machine's noise hits both; the report gives the median per operation
and the ratio MailMax/Dovecot. Every server is stopped and the work directory removed at the
end, also on errors and Ctrl-C.

    python bench/imap_write.py                     # 2,000 APPENDs, 10k INBOX, 3 rounds
    python bench/imap_write.py --tiny              # MailMax only, a few messages (a smoke run)
    python bench/imap_write.py --appends 500 --messages 100000 --runs 2
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import maildir_gen
from dovecot_instance import DovecotInstance, dovecot_available, dovecot_version
from mailmax_instance import MailMaxInstance
from netutil import LOOPBACK

PASSWORD = "benchsecret"
WRITER = "writer"
READER = "big"
OPERATIONS = (
    "APPEND (ms per message)",
    "SELECT",
    "STORE 1:* +FLAGS",
    "SEARCH FLAGGED UNSEEN",
    "STORE 1:* -FLAGS",
    "EXPUNGE",
)


def log(text: str) -> None:
    """Progress on stderr."""
    print(text, file=sys.stderr, flush=True)


def body(size: int) -> bytes:
    """A message of about ``size`` bytes."""
    head = b"From: bench@example.test\r\nTo: writer@example.test\r\nSubject: append\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def check(status: str, data: Any, what: str) -> Any:
    """Raise unless an imaplib answer is OK."""
    if status != "OK":
        raise RuntimeError(f"{what}: {status} {data!r}")
    return data


def login(port: int, user: str) -> imaplib.IMAP4:
    """An imaplib client logged in on the plain IMAP port."""
    client = imaplib.IMAP4(LOOPBACK, port, timeout=300)
    client.login(user, PASSWORD)
    return client


def timed(results: dict[str, list[float]], name: str, work: Any, per: int = 1) -> None:
    """Run ``work()`` and keep its seconds (divided by ``per``, in ms when per > 1)."""
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    results.setdefault(name, []).append(seconds * 1000 / per if per > 1 else seconds)


def one_round(port: int, args: argparse.Namespace, results: dict[str, list[float]]) -> None:
    """Every operation once against one server."""
    message = body(args.size)
    client = login(port, WRITER)
    try:

        def append_loop() -> None:
            for _ in range(args.appends):
                check(*client.append("INBOX", None, None, message), "APPEND")

        timed(results, "APPEND (ms per message)", append_loop, per=args.appends)
    finally:
        client.logout()
    client = login(port, READER)
    try:
        count: list[int] = []

        def select() -> None:
            count.append(int(check(*client.select("INBOX"), "SELECT")[0]))

        timed(results, "SELECT", select)
        timed(
            results,
            "STORE 1:* +FLAGS",
            lambda: check(*client.store("1:*", "+FLAGS", "(\\Flagged)"), "STORE"),
        )
        timed(
            results,
            "SEARCH FLAGGED UNSEEN",
            lambda: check(*client.search(None, "FLAGGED UNSEEN"), "SEARCH"),
        )
        timed(
            results,
            "STORE 1:* -FLAGS",
            lambda: check(*client.store("1:*", "-FLAGS", "(\\Flagged)"), "STORE"),
        )
        last = count[0]
        doomed = f"{max(1, last - args.expunge + 1)}:{last}"
        check(*client.store(doomed, "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
        timed(results, "EXPUNGE", lambda: check(*client.expunge(), "EXPUNGE"))
    finally:
        client.logout()


def setup(args: argparse.Namespace, workdir: Path, servers: dict[str, Any]) -> None:
    """Generate the Maildir; give each server its copies; start them (each joins ``servers``
    before it starts, so that the caller stops it also when a later one fails)."""
    master = workdir / "master"
    maildir_gen.generate(master, args.messages, args.size)
    for name in args.servers:
        writer = workdir / f"{name}-mail" / WRITER
        maildir_gen.make_dirs(writer)
        reader = workdir / f"{name}-mail" / READER
        maildir_gen.link_copy(master, reader, args.messages, args.size)
        users = {WRITER: (PASSWORD, writer), READER: (PASSWORD, reader)}
        if name == "mailmax":
            server: Any = MailMaxInstance(workdir / "mailmax")
            server.prepare(users)
        else:
            server = DovecotInstance(workdir / "dovecot", users)
            server.prepare()
        servers[name] = server
        server.start()
        log(f"{name}: imap {server.port_imap}")


def report(args: argparse.Namespace, results: dict[str, dict[str, list[float]]]) -> str:
    """The Markdown table: medians, and MailMax/Dovecot when both ran."""
    names = list(results)
    both = {"mailmax", "dovecot"} <= set(names)
    lines = [
        "# IMAP writes: MailMax vs Dovecot (same run)",
        "",
        f"{args.appends} APPENDs of {args.size} bytes; INBOX of {args.messages:,} messages,"
        f" EXPUNGE of {args.expunge}; {args.runs} round(s), medians (seconds unless noted).",
        "",
    ]
    if "dovecot" in names:
        lines.append(f"- dovecot: Dovecot {dovecot_version()}")
    header = ["operation", *names] + (["MailMax/Dovecot"] if both else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for operation in OPERATIONS:
        medians = {n: statistics.median(results[n][operation]) for n in names}
        row = [operation, *(f"{medians[n]:.4f}" for n in names)]
        if both:
            row.append(f"**{medians['mailmax'] / medians['dovecot']:.2f}**")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; ``--tiny`` overrides sizes, rounds and servers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=2000, help="APPENDs per round")
    parser.add_argument("--messages", type=int, default=10_000, help="messages in INBOX")
    parser.add_argument("--expunge", type=int, default=100, help="messages expunged per round")
    parser.add_argument("--size", type=int, default=4096, help="bytes per message")
    parser.add_argument("--runs", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--servers", default="mailmax,dovecot")
    parser.add_argument("--tiny", action="store_true", help="MailMax only, a few messages")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the work dir")
    args = parser.parse_args(argv)
    if args.tiny:
        args.appends, args.messages, args.expunge, args.runs = 20, 200, 10, 1
        args.servers = "mailmax"
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in ("mailmax", "dovecot"):
            parser.error(f"unknown server {name!r} (mailmax, dovecot)")
    if args.expunge * args.runs >= args.messages:
        parser.error("--expunge times --runs must stay below --messages")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print the report."""
    args = parse_args(argv)
    if "dovecot" in args.servers and not dovecot_available():
        print("dovecot is not installed: apt-get install -y dovecot-imapd")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="imap-write-", dir=args.workdir))
    os.chmod(workdir, 0o755)  # Dovecot's mail processes run as nobody
    results: dict[str, dict[str, list[float]]] = {}
    servers: dict[str, Any] = {}
    try:
        setup(args, workdir, servers)
        for number in range(args.runs):
            order = list(servers)[:: -1 if number % 2 else 1]
            for name in order:
                log(f"round {number + 1}/{args.runs}: {name}")
                one_round(servers[name].port_imap, args, results.setdefault(name, {}))
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
