"""How long an IMAP or POP3 log-in takes under load, with the successful-log-in cache and without.

Starts MailMax as an administrator would (``mailmax_instance.py``), adds ``--users`` users, and
runs ``--concurrency`` clients for ``--seconds`` each, every client connecting, logging in and
logging out again and again. A log-in's time is from sending LOGIN (IMAP) or PASS (POP3) to its
reply. Runs twice: ``[auth] cache_seconds = 0`` (every log-in pays for argon2id) and the default
cache, warmed by one log-in per user before the clock starts. Prints a Markdown table;
``--json`` writes the raw numbers too.

    python bench/login_latency.py                  # 5 clients, 10 s per protocol and mode
    python bench/login_latency.py --quick          # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailmax_instance import DOMAIN, MailMaxInstance, write_toml
from netutil import LOOPBACK


def imap_login(port: int, user: str, password: str) -> float:
    """One IMAP connection: LOGIN (timed), LOGOUT."""
    with socket.create_connection((LOOPBACK, port), timeout=30) as conn:
        reader = conn.makefile("rb")
        reader.readline()
        start = time.perf_counter()
        conn.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        while not (line := reader.readline()).startswith(b"a "):
            if not line:
                raise ConnectionError("closed during LOGIN")
        elapsed = time.perf_counter() - start
        if not line.startswith(b"a OK"):
            raise RuntimeError(f"login failed: {line!r}")
        conn.sendall(b"b LOGOUT\r\n")
        return elapsed


def pop3_login(port: int, user: str, password: str) -> float:
    """One POP3 connection: USER, PASS (timed), QUIT."""
    with socket.create_connection((LOOPBACK, port), timeout=30) as conn:
        reader = conn.makefile("rb")
        reader.readline()
        conn.sendall(f"USER {user}\r\n".encode())
        reader.readline()
        start = time.perf_counter()
        conn.sendall(f"PASS {password}\r\n".encode())
        line = reader.readline()
        elapsed = time.perf_counter() - start
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"login failed: {line!r}")
        conn.sendall(b"QUIT\r\n")
        reader.readline()
        return elapsed


def run(login, port: int, users: list[str], clients: int, seconds: float) -> list[float]:
    """``clients`` threads logging in until ``seconds`` have passed; every log-in's time."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        user = users[number % len(users)]
        while time.monotonic() < deadline:
            try:
                elapsed = login(port, f"{user}@{DOMAIN}", f"{user}-secret")
            except (OSError, RuntimeError) as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                times.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    return times


def summary(times: list[float]) -> dict[str, float]:
    """Count, p50, p90, p99 (ms) and log-ins per second."""
    if not times:
        return {"count": 0}
    ordered = sorted(times)
    pick = lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "count": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p90_ms": round(pick(0.90), 2),
        "p99_ms": round(pick(0.99), 2),
    }


def main() -> int:
    """Run both modes on both protocols and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 clients, 2 s each")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.seconds, args.users = 2, 2.0, 2
    users = [f"user{n}" for n in range(args.users)]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mailmax-login-") as work:
        server = MailMaxInstance(Path(work) / "mailmax")
        maildirs = {}
        for user in users:
            box = Path(work) / "boxes" / user
            for sub in ("new", "cur", "tmp"):
                (box / sub).mkdir(parents=True)
            maildirs[user] = (f"{user}-secret", box)
        print("preparing MailMax ...", file=sys.stderr)
        server.prepare(maildirs)
        sections = tomllib.loads(server.config.read_text())
        try:
            for mode, cache_seconds in (("no cache", 0.0), ("cache warm", 300.0)):
                sections["auth"] = {**sections.get("auth", {}), "cache_seconds": cache_seconds}
                write_toml(server.config, sections)
                server.start()
                try:
                    for user in users:  # warm: the first log-in of each user pays argon2id
                        imap_login(server.port_imap, f"{user}@{DOMAIN}", f"{user}-secret")
                    for name, login, port in (
                        ("IMAP", imap_login, server.port_imap),
                        ("POP3", pop3_login, server.port_pop3),
                    ):
                        print(f"{name}, {mode} ...", file=sys.stderr)
                        times = run(login, port, users, args.concurrency, args.seconds)
                        results[f"{name}, {mode}"] = summary(times)
                finally:
                    server.stop()
        finally:
            server.stop()
    print(f"\n## Log-in latency, {args.concurrency} clients, {args.seconds:g} s per cell\n")
    print("| protocol, cache | log-ins | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        cells = [row.get(key, "-") for key in ("count", "p50_ms", "p90_ms", "p99_ms")]
        print(f"| {name} | " + " | ".join(str(cell) for cell in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
