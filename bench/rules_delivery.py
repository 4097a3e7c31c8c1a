"""Local delivery throughput with 20 system and 20 user rules, against none, in the same run.

One MailMax server (``twistd mailmax`` on loopback, in a temporary data directory) receives
batches of messages for one local user over SMTP; a batch counts from its first message sent to
its last one stored in the Maildir. Rounds alternate between no rules and 40 rules (header,
body and size conditions, no programs; rules are switched with ``mailmax rule`` and hold at
within the default ``refresh_seconds`` of 2 s, which the benchmark waits), so both see the
same machine. Most rules do not match; the last
user rule files every message in a folder, so the rules' decision is really carried out.

::

    python bench/rules_delivery.py                 # 5 rounds of 300 messages each way
    python bench/rules_delivery.py --quick         # 1 round of 100 (a smoke run)
    python bench/rules_delivery.py --messages 1000 --rounds 5 --json

Prints the rates, the ratio (with rules / without: the median of the rounds' ratios, each
round measuring both back to back) and the server's CPU time per message (its whole process
group), which a busy machine disturbs less than the rates; the target is a ratio of at least
0.85.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailmax.testing import DOMAIN, TestServer, start_server  # noqa: E402

USER = f"alice@{DOMAIN}"
FOLDER = "Filed"
TARGET_RATIO = 0.85
#: The server's rule refresh (the default); the benchmark waits that long after a change.
REFRESH = 2.0


def rules_to_add() -> list[list[str]]:
    """``mailmax rule add`` arguments of the 20 system and 20 user rules."""
    out = []
    for number in range(20):
        kind = number % 3
        if kind == 0:
            condition = f"header Subject contains word bench-nomatch-{number}"
        elif kind == 1:
            condition = f'body contains "phrase that never occurs {number}"'
        else:
            condition = f"size > {50_000 + number}"
        out.append(
            ["rule", "add", f"sys-{number}", "--system", f"--if={condition}", "--then=folder Never"]
        )
    for number in range(19):
        kind = number % 3
        if kind == 0:
            condition = f"header X-Bench-{number} exists"
        elif kind == 1:
            condition = f"text contains word absent{number}"
        else:
            condition = f"size between {60_000 + number} {70_000 + number}"
        out.append(
            [
                "rule",
                "add",
                f"user-{number}",
                "--user",
                USER,
                f"--if={condition}",
                "--then=folder Never",
            ]
        )
    out.append(
        [
            "rule",
            "add",
            "user-file",
            "--user",
            USER,
            "--if=header Subject contains bench",
            f"--then=folder {FOLDER}",
        ]
    )
    return out


def message(number: int, size: int) -> bytes:
    """A plain message of about ``size`` bytes of body."""
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = line * max(1, size // len(line))
    return (
        f"From: load@sender.test\r\nTo: {USER}\r\nSubject: bench message {number}\r\n"
        f"Message-ID: <bench-{number}-{time.time_ns()}@sender.test>\r\n\r\n{body}"
    ).encode()


def stored(server: TestServer, folder: str) -> int:
    """How many messages are in ``folder`` of the user's Maildir."""
    box = server.maildir(USER, folder)
    return sum(len(list((box / sub).iterdir())) for sub in ("new", "cur") if (box / sub).is_dir())


def cpu_seconds(server: TestServer) -> float:
    """CPU time (user + system) used so far by the server's processes (its process group)."""
    assert server.proc is not None
    group, total = server.proc.pid, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # the process group, after the state and the parent
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def send(server: TestServer, count: int, clients: int, size: int = 4096) -> int:
    """Send ``count`` messages of ``size`` body bytes over ``clients`` connections (each
    ``sendmail`` must succeed); the count."""
    errors: list[BaseException] = []

    def client(numbers: range) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=60) as smtp:
                for number in numbers:
                    smtp.sendmail("load@sender.test", [USER], message(number, size))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=client, args=(range(i, count, clients),)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"sending failed: {errors[0]!r}")
    return count


def batch(
    server: TestServer, count: int, size: int, clients: int, folder: str
) -> tuple[float, float]:
    """Send ``count`` messages over ``clients`` connections; (messages per second until the
    last one is stored in ``folder``, server CPU milliseconds per message)."""
    before = stored(server, folder)
    cpu_before = cpu_seconds(server)
    start = time.monotonic()
    send(server, count, clients, size)
    deadline = time.monotonic() + 300
    while stored(server, folder) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored(server, folder) - before} of {count} stored")
        time.sleep(0.01)
    rate = count / (time.monotonic() - start)
    return rate, (cpu_seconds(server) - cpu_before) * 1000 / count


def cli(server: TestServer, *args: str) -> str:
    """Run a ``mailmax`` command against the server, in this process (it must succeed)."""
    from click.testing import CliRunner

    from mailmax.core.cli.main import cli as mailmax

    result = CliRunner().invoke(mailmax, ["--config", str(server.config_path), *args])
    if result.exit_code != 0:
        raise RuntimeError(f"mailmax {' '.join(args)} failed: {result.output}")
    return result.stdout


def bodies_read(server: TestServer) -> int:
    """How many deliveries had a rule condition parse the body (the server's counter)."""
    answer = json.loads(cli(server, "metrics", "rules.", "--json"))
    return int(sum(row["value"] for row in answer if row["name"] == "rules.bodies_read"))


def switch_rules(server: TestServer, *, on: bool) -> None:
    """Add the 40 rules, or delete them; then wait until the server reads them again."""
    for args in rules_to_add():
        if on:
            cli(server, *args)
        else:
            cli(server, "rule", "delete", args[2], *args[3 : 5 if args[3] == "--user" else 4])
    time.sleep(REFRESH + 0.5)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 when the ratio meets the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches each way")
    parser.add_argument("--size", type=int, default=4096, help="body bytes per message")
    parser.add_argument("--clients", type=int, default=4, help="SMTP connections")
    parser.add_argument("--quick", action="store_true", help="one round of 100 messages")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(argv)
    if options.quick:
        options.messages, options.rounds = 100, 1
    with tempfile.TemporaryDirectory(prefix="rules-bench-") as folder:
        server = start_server(
            Path(folder),
            settings={"rules": {"refresh_seconds": REFRESH}},
            sections={"queue": {"scan_interval": 1.0}},
        )
        try:
            rates: dict[str, list[float]] = {"none": [], "rules": []}
            cpu: dict[str, list[float]] = {"none": [], "rules": []}
            batch(server, 20, options.size, 2, "INBOX")  # warm up
            for round_number in range(options.rounds):
                for kind, target in (("none", "INBOX"), ("rules", FOLDER)):
                    if kind == "rules":
                        switch_rules(server, on=True)
                    rate, per_message = batch(
                        server, options.messages, options.size, options.clients, target
                    )
                    rates[kind].append(rate)
                    cpu[kind].append(per_message)
                    if kind == "rules":
                        switch_rules(server, on=False)
                print(
                    f"round {round_number + 1}: none {rates['none'][-1]:.0f} msg/s"
                    f" ({cpu['none'][-1]:.1f} ms CPU/msg), rules {rates['rules'][-1]:.0f} msg/s"
                    f" ({cpu['rules'][-1]:.1f} ms CPU/msg)",
                    file=sys.stderr,
                )
            parsed = bodies_read(server)
        finally:
            server.stop()
    ratios = [r / n for n, r in zip(rates["none"], rates["rules"], strict=True)]
    ratio = statistics.median(ratios)
    none, ruled = statistics.median(rates["none"]), statistics.median(rates["rules"])
    cpu_none, cpu_rules = statistics.median(cpu["none"]), statistics.median(cpu["rules"])
    result = {
        "messages_per_batch": options.messages,
        "rounds": options.rounds,
        "body_bytes": options.size,
        "clients": options.clients,
        "rules": "20 system + 20 user (header, body, size)",
        "rate_without_rules": round(none, 1),
        "rate_with_rules": round(ruled, 1),
        "ratio": round(ratio, 3),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "cpu_ms_per_message_without_rules": round(cpu_none, 2),
        "cpu_ms_per_message_with_rules": round(cpu_rules, 2),
        "target_ratio": TARGET_RATIO,
        "raw": {"rates": rates, "cpu_ms_per_message": cpu},
        "deliveries_whose_body_was_read": parsed,
    }
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"local delivery, {options.messages} messages x {options.rounds} rounds, "
            f"{options.size}-byte bodies, {options.clients} clients:\n"
            f"  without rules: {none:.0f} msg/s\n"
            f"  with 20 system + 20 user rules: {ruled:.0f} msg/s\n"
            f"  ratio: {ratio:.2f} (median of the rounds' ratios; target >= {TARGET_RATIO})\n"
            f"  server CPU per message: {cpu_none:.1f} ms without rules, {cpu_rules:.1f} ms"
            " with\n"
            f"  deliveries whose body a rule read: {parsed}"
        )
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
