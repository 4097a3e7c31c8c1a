"""Server CPU time per locally delivered message, by rule set, independent of the neighbours.

Starts MailMax servers side by side, one per variant and source tree (``--tree
before=/path/to/other/checkout`` compares another checkout's code in the same run):

- ``none``: no rules; every message lands in the INBOX;
- ``one``: one rule that never matches (a size condition); the INBOX;
- ``folder``: one rule for any message that files it in a folder;
- ``rules``: the 20 system and 20 user rules of ``rules_delivery.py`` (the last files every
  message in a folder).

It sends the same number of messages to each in interleaved rounds, waits until every message
is stored, and reports the server's user+system CPU milliseconds per message (from
``/proc/PID/stat``: in all, and of the main process alone), the median over the rounds. With
``--profile DIR`` each server runs under cProfile after the warm-up (stats in
``DIR/TREE-VARIANT.prof``).

Usage::

    python bench/rules_cpu.py --rounds 5 --messages 300
    python bench/rules_cpu.py --tree before=/path/to/main --tree after=. --variants none,rules
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from policy_cpu import (  # noqa: E402
    PROFILED_TWISTD,
    interleaved_rounds,
    median_by_server,
    stop_all,
)
from rules_delivery import FOLDER, REFRESH, USER, cli, rules_to_add, send  # noqa: E402

from mailmax.testing import TestServer, start_server  # noqa: E402

VARIANTS: dict[str, list[list[str]]] = {
    "none": [],
    "one": [["rule", "add", "big", "--user", USER, "--if=size > 900000", "--then=folder Never"]],
    "folder": [["rule", "add", "all", "--user", USER, "--if=any", f"--then=folder {FOLDER}"]],
    "rules": rules_to_add(),
}


#: Added to the profiled ``twistd``: the collector's passes and their CPU time per generation
#: (from the warm-up's end on), written to ``gc.json`` with the profile.
GC_WATCH = """import gc, json
gc_stats = {"started": False, "passes": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "at": 0.0}

def gc_watch(phase, info):
    if not gc_stats["started"]:
        return
    if phase == "start":
        gc_stats["at"] = time.thread_time()
    else:
        gc_stats["passes"][info["generation"]] += 1
        gc_stats["seconds"][info["generation"]] += time.thread_time() - gc_stats["at"]

def dump_gc():
    with open("gc.json", "w") as out:
        json.dump(gc_stats, out)

gc.callbacks.append(gc_watch)
signal.signal(signal.SIGUSR1, lambda *_: (gc_stats.update(started=True), profile.enable()))
"""


def profile_twistd(folder: Path) -> None:
    """Put a ``twistd`` first on PATH that runs under cProfile, timed by the reactor thread's
    CPU clock (not the wall clock, which the neighbours disturb)."""
    folder.mkdir()
    wrapper = folder / "twistd"
    source = PROFILED_TWISTD.format(python=sys.executable)
    source = source.replace("import cProfile, signal", "import cProfile, signal, time")
    source = source.replace("cProfile.Profile()", "cProfile.Profile(time.thread_time)")
    source = source.replace("try:\n    run()", GC_WATCH + "try:\n    run()")
    source = source.replace(
        'profile.dump_stats("cprofile.out")', 'profile.dump_stats("cprofile.out"); dump_gc()'
    )
    wrapper.write_text(source)
    wrapper.chmod(0o755)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ['PATH']}"


def stored(server: TestServer) -> int:
    """How many messages the user's INBOX and filing folder hold."""
    total = 0
    for folder in ("INBOX", FOLDER):
        box = server.maildir(USER, folder)
        total += sum(len(os.listdir(box / sub)) for sub in ("new", "cur") if (box / sub).is_dir())
    return total


def wait_stored(server: TestServer, count: int, timeout: float = 300.0) -> None:
    """Wait until ``count`` messages are stored and the last deliveries' bookkeeping is done."""
    deadline = time.monotonic() + timeout
    while stored(server) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored(server)} of {count} messages stored")
        time.sleep(0.05)
    time.sleep(0.3)


def run(args: argparse.Namespace) -> dict:
    """Start the servers, measure the rounds, stop everything; the raw runs and medians."""
    trees = dict(item.split("=", 1) for item in args.tree) or {"this": str(ROOT)}
    names = args.variants
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mailmax-rules-cpu-") as tmp:
        if args.profile:
            profile_twistd(Path(tmp) / "bin")
            Path(args.profile).mkdir(parents=True, exist_ok=True)
        servers: dict[tuple[str, str], TestServer] = {}
        totals: dict[tuple[str, str], int] = {}
        try:
            for tree, path in trees.items():
                for name in names:
                    server = servers[tree, name] = start_server(
                        Path(tmp) / f"{tree}-{name}",
                        settings={"rules": {"refresh_seconds": REFRESH}},
                        pythonpath=[os.path.abspath(path)],
                    )
                    for rule in VARIANTS[name]:
                        cli(server, *rule)
            time.sleep(REFRESH + 0.5)
            for key, server in servers.items():
                totals[key] = send(server, 50, 4)
                wait_stored(server, totals[key])
            if args.profile:
                for server in servers.values():
                    server.proc.send_signal(signal.SIGUSR1)
            for index, key, _, per_msg in interleaved_rounds(
                servers,
                args.rounds,
                lambda server: send(server, args.messages, args.concurrency),
                wait_stored,
                totals,
            ):
                cpu = {"total": per_msg["total"], "reactor": per_msg["reactor"]}
                cpu["main"] = round(per_msg["total"] - per_msg["helpers"], 3)
                rows.append({"round": index, "tree": key[0], "variant": key[1], "cpu": cpu})
        finally:
            stop_all(servers, args.profile, (("cprofile.out", "prof"), ("gc.json", "gc.json")))
    medians = median_by_server(rows, "cpu", trees, names, ("total", "main", "reactor"))
    return {"runs": rows, "cpu_ms_per_msg": medians}


def main() -> int:
    """Run the measurement and print the medians (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--variants",
        default=list(VARIANTS),
        type=lambda s: [name for name in s.split(",") if name],
        help=f"which of {', '.join(VARIANTS)} to run (comma-separated)",
    )
    parser.add_argument(
        "--tree", action="append", default=[], metavar="LABEL=PATH",
        help="a source tree to run the servers from (repeatable; default: this one)",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="DIR", help="cProfile every server into DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, parts in result["cpu_ms_per_msg"].items():
            print(f"{key:>20}: " + ", ".join(f"{p} {v:.2f} ms" for p, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
