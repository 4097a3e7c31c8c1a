"""Where the time of an accepted message goes, from the timing trace of the acceptance path.

Either let this script start MailMax with the trace on and load it with ``smtp_load.py``::

    python bench/spool_trace.py --run --concurrency 10 --size 4096 --seconds 3

or start MailMax yourself with ``MAILMAX_SPOOL_TRACE=FILE`` in its environment (the spool
writer inherits it), load it, and read the file::

    python bench/spool_trace.py FILE

Either prints the median, p90 and p99 in milliseconds of each stage of a message, from the end
of its DATA to its 250 reply (see :mod:`mailmax.core.spool.trace` for the records), and the
batches' sizes and sync times. Only messages seen by every process count (``sync = "filesystem"``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from servers import SERVERS, wait_delivered
from smtp_load import LoadConfig, run_load

STAGES = (
    ("end of data -> spool accept (checks, data hooks)", "dot", "accept"),
    ("accept -> writer has it (pipe)", "accept", "read"),
    ("writer: write files", "read", "written"),
    ("written -> sync 1 starts (wait)", "written", "sync1_start"),
    ("sync 1 (its files)", "sync1_start", "sync1_end"),
    ("sync 1 end -> renamed", "sync1_end", "renamed"),
    ("renamed -> sync 2 starts (wait)", "renamed", "sync2_start"),
    ("sync 2 (its renames)", "sync2_start", "sync2_end"),
    ("sync 2 end -> answer sent", "sync2_end", "sent"),
    ("answer sent -> server has it (pipe)", "sent", "answer"),
    ("server has it -> 250 written", "answer", "reply"),
    ("total: end of data -> 250", "dot", "reply"),
)


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def load(path: Path) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per message its stamps (seconds), and the writer's batches."""
    messages: dict[str, dict[str, float]] = {}
    batches = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        kind = record["p"]
        if kind == "writer":
            batches.append(record)
            for index, queue_id in enumerate(record["ids"]):
                stamps = messages.setdefault(queue_id, {})
                stamps["read"] = record["read"][index]
                stamps["written"] = record["written"][index]
                stamps["sync1_start"], stamps["sync1_end"] = record["sync1"]
                stamps["renamed"] = record["renamed"]
                stamps["sync2_start"], stamps["sync2_end"] = record["sync2"]
                stamps["sent"] = record["sent"]
        elif kind == "spool":
            messages.setdefault(record["id"], {})["answer"] = record["answer"]
        elif kind == "smtp" and " " not in record["id"]:
            stamps = messages.setdefault(record["id"], {})
            stamps.update(dot=record["dot"], accept=record["accept"], reply=record["reply"])
    names = {name for _, start, end in STAGES for name in (start, end)}
    complete = {k: v for k, v in messages.items() if names <= v.keys()}
    return complete, batches


def traced_run(trace: Path, concurrency: int, size: int, seconds: float) -> None:
    """Start MailMax with the trace on, load it, print the load's summary and CPU/message."""
    workdir = Path(tempfile.mkdtemp(prefix="mailmax-trace-"))
    os.environ["MAILMAX_SPOOL_TRACE"] = str(trace)
    server = SERVERS["mailmax"](workdir)
    try:
        server.start()
        run_load(LoadConfig(port=server.port, concurrency=concurrency, size=size, seconds=0.5))
        trace.write_text("")  # the warm-up does not count
        cpu = server.cpu_seconds() or 0.0
        before = server.harvest()
        result = run_load(
            LoadConfig(port=server.port, concurrency=concurrency, size=size, seconds=seconds)
        )
        wait_delivered(server, before + result.completed, 10.0)
        used = (server.cpu_seconds() or 0.0) - cpu
        print(result.line())
        if result.completed:
            print(f"server CPU {used * 1000 / result.completed:.2f} ms per message\n")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    """Print the per-stage latencies of a trace file (after a run of its own with --run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path, nargs="?", help="trace file (default: temporary)")
    parser.add_argument("--run", action="store_true", help="start and load MailMax first")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096, help="body bytes")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    trace = args.trace
    if trace is None:
        if not args.run:
            parser.error("give a trace file, or --run")
        handle, name = tempfile.mkstemp(prefix="mailmax-trace-", suffix=".jsonl")
        os.close(handle)
        trace = Path(name)
    if args.run:
        traced_run(trace, args.concurrency, args.size, args.seconds)
    messages, batches = load(trace)
    if not messages:
        print("no complete message in the trace", file=sys.stderr)
        return 1
    print(f"{len(messages)} messages, {len(batches)} batches\n")
    print("| stage | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|")
    for label, start, end in STAGES:
        values = [(m[end] - m[start]) * 1000 for m in messages.values()]
        print(
            f"| {label} | {statistics.median(values):.2f} | {percentile(values, 0.9):.2f} "
            f"| {percentile(values, 0.99):.2f} |"
        )
    sizes = [len(b["ids"]) for b in batches]
    syncs = [(b["sync2"][1] - b["sync2"][0]) * 1000 for b in batches]
    print(
        f"\nbatch size p50 {statistics.median(sizes)}, max {max(sizes)}; "
        f"sync p50 {statistics.median(syncs):.2f} ms, p90 {percentile(syncs, 0.9):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
