"""Server CPU time per message with the SMTP policy plugins on, independent of the neighbours.

Wall-clock rates on a shared machine are noise; the CPU a server spends per message is not. This
starts MailMax servers side by side — ``none`` (no plugins), ``default`` (the built-in default
set) and ``policy`` (the default set plus ``--policy``) — for each source tree named with
``--tree`` (``--tree before=/path/to/other/checkout`` compares another checkout's code, same run),
sends the same number of 4 KiB messages to each in interleaved rounds, waits until every message
is delivered, and reports the server's user+system CPU milliseconds per message (from
``/proc/PID/stat``; in all, of the reactor thread alone, of the helper processes such as the
spool writer): the median over the rounds.

With ``--profile DIR`` every server runs under cProfile from the end of the warm-up on (its
reactor thread; the profiler costs
CPU of its own, so compare profiles with profiles), and its stats land in ``DIR/TREE-VARIANT.prof``
(read them with ``python -m pstats``).

Usage::

    python bench/policy_cpu.py                              # this tree, 3 rounds of 400 messages
    python bench/policy_cpu.py --tree before=/path/to/main --rounds 5
    python bench/policy_cpu.py --policy bans,rbl,tarpit,access --messages 1000 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from policy_accept import POLICY_SETTINGS, ZONES, variants  # noqa: E402
from smtp_load import MODES, LoadConfig, run_load  # noqa: E402

from mailmax.testing import TestServer, start_server  # noqa: E402
from tests.fixtures.dns import dns_server  # noqa: E402

RECIPIENT = "alice@example.test"
TICKS = os.sysconf("SC_CLK_TCK")


#: The parts of the server's CPU time the table shows.
PARTS = ("total", "reactor", "helpers")


def _ticks_ms(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def cpu_ms(pid: int) -> dict[str, float]:
    """CPU milliseconds (user + system) so far: the server process (``total``: every thread
    plus its helper processes, such as the spool writer), its reactor thread alone
    (``reactor``) and the helper processes alone (``helpers``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    helpers = 0.0
    for child in children:
        with contextlib.suppress(OSError):
            helpers += _ticks_ms(f"/proc/{child}/stat")
    return {
        "total": _ticks_ms(f"/proc/{pid}/stat") + helpers,
        "reactor": _ticks_ms(f"/proc/{pid}/task/{pid}/stat"),
        "helpers": helpers,
    }


def send(server: TestServer, messages: int, concurrency: int, mode: str = "persistent") -> int:
    """Send ``messages`` 4 KiB messages to ``server`` (``mode``: one connection per client
    or per message); the number accepted."""
    result = run_load(
        LoadConfig(
            port=server.ports["smtp"],
            concurrency=concurrency,
            mode=mode,
            size=4096,
            seconds=600,
            max_messages=messages,
            recipient=RECIPIENT,
        )
    )
    return result.completed


def delivered(server: TestServer) -> int:
    """How many messages the recipient's Maildir holds."""
    box = server.maildir(RECIPIENT)
    return sum(len(os.listdir(box / sub)) for sub in ("new", "cur") if (box / sub).is_dir())


def wait_delivered(server: TestServer, count: int, timeout: float = 120.0) -> None:
    """Wait until ``count`` messages are in the Maildir and the queue is idle."""
    deadline = time.monotonic() + timeout
    while delivered(server) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {delivered(server)} of {count} messages delivered")
        time.sleep(0.1)
    time.sleep(0.3)  # the last deliveries' bookkeeping


#: The ``twistd`` that ``--profile`` puts first on PATH: the real one with cProfile switched on
#: by SIGUSR1 (after the warm-up), writing the stats when twistd stops (twistd ends itself with
#: the signal it got, so dump before that).
PROFILED_TWISTD = """#!{python}
import cProfile, signal
from twisted.application import app
from twisted.scripts.twistd import run

profile = cProfile.Profile()
exit_with_signal = app._exitWithSignal

def dump_then_exit(sig):
    profile.disable()
    profile.dump_stats("cprofile.out")
    exit_with_signal(sig)

app._exitWithSignal = dump_then_exit
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
try:
    run()
finally:
    profile.disable()
    profile.dump_stats("cprofile.out")
"""


def profile_twistd(folder: Path) -> None:
    """Put a ``twistd`` first on PATH that runs under cProfile (the reactor thread), writing
    ``cprofile.out`` in the server's data directory when it stops."""
    folder.mkdir()
    wrapper = folder / "twistd"
    wrapper.write_text(PROFILED_TWISTD.format(python=sys.executable))
    wrapper.chmod(0o755)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ['PATH']}"


def interleaved_rounds(
    servers: dict[tuple[str, str], TestServer],
    rounds: int,
    send_round: Callable[[TestServer], int],
    wait: Callable[[TestServer, int], None],
    totals: dict[tuple[str, str], int],
) -> list[tuple[int, tuple[str, str], int, dict[str, float]]]:
    """Load each server in turn, ``rounds`` times: ``send_round`` sends (the count), ``wait``
    waits until the server's running total (``totals``) is done. Each round's (index, server
    key, messages, CPU milliseconds per message by :func:`cpu_ms` part)."""
    out = []
    for index in range(rounds):
        for key, server in servers.items():
            assert server.proc is not None
            before = cpu_ms(server.proc.pid)
            accepted = send_round(server)
            totals[key] += accepted
            wait(server, totals[key])
            after = cpu_ms(server.proc.pid)
            per_msg = {
                part: round((after[part] - before[part]) / max(accepted, 1), 3) for part in after
            }
            print(f"round {index} {key[0]:>8} {key[1]:>8}: {per_msg}", file=sys.stderr)
            out.append((index, key, accepted, per_msg))
    return out


def median_by_server(
    rows: list[dict], field: str, trees: Iterable[str], names: Iterable[str], parts: Iterable[str]
) -> dict[str, dict[str, float]]:
    """For each ``TREE/VARIANT``, the median over its rounds of each part of ``row[field]``."""
    return {
        f"{tree}/{name}": {
            part: statistics.median(
                r[field][part] for r in rows if (r["tree"], r["variant"]) == (tree, name)
            )
            for part in parts
        }
        for tree in trees
        for name in names
    }


def stop_all(
    servers: dict[tuple[str, str], TestServer],
    profile: str | None,
    kept: tuple[tuple[str, str], ...] = (("cprofile.out", "prof"),),
) -> None:
    """Stop every server; with a ``profile`` folder, keep each file ``kept`` names of each
    server's data directory there as ``TREE-VARIANT.SUFFIX``."""
    for (tree, name), server in servers.items():
        server.stop()
        for filename, suffix in kept:
            found = server.data_dir / filename
            if profile and found.exists():
                shutil.copy(found, Path(profile) / f"{tree}-{name}.{suffix}")


def run(args: argparse.Namespace) -> dict:
    """Start the servers, measure the rounds, stop everything; the raw runs and medians."""
    trees = dict(item.split("=", 1) for item in args.tree) or {"this": str(ROOT)}
    plugin_lists = variants(args.policy)
    rows: list[dict] = []
    with dns_server(ZONES) as dns, tempfile.TemporaryDirectory(prefix="mailmax-cpu-") as tmp:
        if args.profile:
            profile_twistd(Path(tmp) / "bin")
            Path(args.profile).mkdir(parents=True, exist_ok=True)
        servers: dict[tuple[str, str], TestServer] = {}
        totals: dict[tuple[str, str], int] = {}
        try:
            for tree, path in trees.items():
                for name, plugins in plugin_lists.items():
                    servers[tree, name] = start_server(
                        Path(tmp) / f"{tree}-{name}",
                        plugins=plugins,
                        settings={k: v for k, v in POLICY_SETTINGS.items() if k in plugins},
                        sections={"queue": {"dns_servers": [f"{dns[0]}:{dns[1]}"]}},
                        pythonpath=[path],
                    )
            for key, server in servers.items():  # warm-up (imports, caches, the rbl answer)
                totals[key] = send(server, 100, 5)
                wait_delivered(server, totals[key])
            if args.profile:
                for server in servers.values():
                    server.proc.send_signal(signal.SIGUSR1)
            for index, key, accepted, per_msg in interleaved_rounds(
                servers,
                args.rounds,
                lambda server: send(server, args.messages, args.concurrency, args.mode),
                wait_delivered,
                totals,
            ):
                rows.append(
                    {"round": index, "tree": key[0], "variant": key[1],
                     "accepted": accepted, "cpu_ms_per_msg": per_msg}
                )  # fmt: skip
        finally:
            stop_all(servers, args.profile)
    medians = median_by_server(rows, "cpu_ms_per_msg", trees, plugin_lists, PARTS)
    return {"plugins": plugin_lists, "trees": trees, "runs": rows, "cpu_ms_per_msg": medians}


def main() -> int:
    """Run the measurement and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--mode", default="persistent", choices=MODES)
    parser.add_argument(
        "--policy",
        default="bans,rbl,tarpit,access",
        type=lambda s: [name for name in s.split(",") if name],
        help="plugins the policy variant adds to the default set",
    )
    parser.add_argument(
        "--tree", action="append", default=[], metavar="LABEL=PATH",
        help="a source tree to run the servers from (repeatable; default: this one)",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="DIR", help="cProfile every server into DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    trees = report["trees"]
    print(f"{'CPU ms/msg':20} {'none':>8} {'default':>8} {'policy':>8} {'policy/default':>15}")
    for tree in trees:
        for part in PARTS:
            cpu = {
                name: report["cpu_ms_per_msg"][f"{tree}/{name}"][part] for name in report["plugins"]
            }
            ratio = cpu["policy"] / cpu["default"] if cpu["default"] else float("nan")
            print(
                f"{tree + ' ' + part:20} {cpu['none']:>8.3f} {cpu['default']:>8.3f}"
                f" {cpu['policy']:>8.3f} {ratio:>15.3f}"
            )
    print(f"\nmedians of {args.rounds} interleaved rounds of {args.messages} messages, "
          f"C={args.concurrency} {args.mode}, server CPU with local delivery")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
