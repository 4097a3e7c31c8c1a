"""Memory per idle connection: the MailMax process's RSS growth per open, greeted session.

For each kind (SMTP, SMTPS, IMAP, IMAPS) a fresh server is started, ``--connections`` clients
connect (TLS handshake done for the implicit-TLS ports), read the greeting and then stay idle; the
growth of the twistd process's resident memory, divided by the number of sessions, is the cost of
one idle connection. Every kind gets its own server start, so memory freed by one kind cannot hide
the next one's cost.

    python bench/idle_memory.py                     # 1,000 connections of each kind
    python bench/idle_memory.py --connections 200 --kinds smtp,imap
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import ssl
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from mailmax_instance import MailMaxInstance, write_toml
from netutil import LOOPBACK, free_port

GREETINGS = {"smtp": b"220", "smtps": b"220", "imap": b"* OK", "imaps": b"* OK"}
IMPLICIT_TLS = {"smtps", "imaps"}


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_open_files(needed: int) -> None:
    """Raise this process's open-files limit (the server inherits it) or say why it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"open-files hard limit {hard} is below the {needed} this run needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_idle(kind: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port``, each greeted, none closed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sessions: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
        if kind in IMPLICIT_TLS:
            sock = context.wrap_socket(sock)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"{kind}: connection {len(sessions) + 1} closed before greeting")
            data += chunk
        if not data.startswith(GREETINGS[kind]):
            raise RuntimeError(f"{kind}: unexpected greeting {data[:80]!r}")
        sessions.append(sock)
    return sessions


def measure(kind: str, count: int, settle: float) -> dict[str, float]:
    """Start a server, open ``count`` idle sessions of ``kind`` and return the RSS growth."""
    with tempfile.TemporaryDirectory(prefix="mailmax-idle-") as base:
        instance = MailMaxInstance(Path(base))
        instance.prepare({})
        sections = tomllib.loads(instance.config.read_text())
        port = free_port()
        sections["listeners"].append({"service": kind, "address": LOOPBACK, "port": port})
        sections.setdefault("connections", {})["exempt_networks"] = ["127.0.0.0/8"]
        write_toml(instance.config, sections)
        instance.start()
        try:
            pid = instance.session_id()
            assert pid is not None
            open_idle(kind, port, 5)  # first-use costs (TLS context, imports) are not per session
            time.sleep(settle)
            before = rss_kib(pid)
            sessions = open_idle(kind, port, count)
            time.sleep(settle)
            after = rss_kib(pid)
            for sock in sessions:
                sock.close()
        finally:
            instance.stop()
    return {
        "kind": kind,
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / count, 1),
    }


def main() -> None:
    """Measure every requested kind and print a Markdown table (JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--kinds", default="smtp,smtps,imap,imaps")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before each reading")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raise_open_files(args.connections + 512)
    results = [measure(kind, args.connections, args.settle) for kind in args.kinds.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| kind | connections | RSS before (KiB) | RSS after (KiB) | KiB per connection |")
    print("|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['kind']} | {row['connections']} | {row['rss_before_kib']} | "
            f"{row['rss_after_kib']} | {row['kib_per_connection']} |"
        )


if __name__ == "__main__":
    main()
