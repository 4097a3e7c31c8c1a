"""Micro-benchmark of the spool's group commit (Q1): durable accepts per second.

Compares, on the same disk and in the same command, ways of making a message durable (message
file + JSON envelope, each written and fsynced, renamed into place, directories fsynced):

- ``group``: MailMax's :class:`~mailmax.core.spool.Spool` (worker pool + one directory fsync per
  batch for every message waiting), ``--threads`` workers, ``--max-batch`` per batch;
- ``threads``: one full commit per message, ``--threads`` of them in parallel
  (``deferToThread``: every message pays its own directory fsyncs);
- ``serial``: one full commit per message, one at a time (the Spool with one thread and
  batches of one: one fsync chain per message, like fsync inline on the reactor thread);
- ``nofsync``: the Spool without any fsync (the page-cache ceiling, not durable).

``--concurrency`` accepts are kept in flight (like that many SMTP sessions waiting for their
250). Each cell reports the median of ``--runs`` runs and the ratios to ``threads`` and
``serial`` measured in the same command; the machine is noisy, so compare ratios, not figures
from other runs. A report in Markdown goes to stdout, progress to stderr::

    python bench/spool_commit.py                         # 4 KiB and 100 KiB, C=10 and 50
    python bench/spool_commit.py --sizes 4096 --concurrency 50 --runs 5 --seconds 3
    python bench/spool_commit.py --dir /var/spool/test   # measure another disk
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, task, threads
from twisted.python.threadpool import ThreadPool

from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool

MODES = ("group", "threads", "serial", "nofsync")


class PerMessageCommit:
    """One complete durable commit per message in a thread pool (no group commit)."""

    def __init__(self, directory: Path, threads_: int, reactor: Any) -> None:
        self.spool = Spool(directory, fsync=True)  # only for its layout and ids
        self.reactor = reactor
        self.pool = ThreadPool(threads_, threads_, "bench-commit")

    def start(self) -> None:
        """Create the spool layout and start the threads."""
        for sub in ("tmp", "msg", "env"):
            (self.spool.directory / sub).mkdir(parents=True, exist_ok=True)
        self.pool.start()

    def stop(self) -> defer.Deferred[None]:
        """Stop the threads (every accept has finished by then)."""
        self.pool.stop()
        return defer.succeed(None)

    def accept(self, envelope: SpoolEnvelope, chunks: Sequence[bytes]) -> defer.Deferred[str]:
        """Commit one message on its own in a worker thread."""
        data = envelope.to_json()
        return threads.deferToThreadPool(
            self.reactor, self.pool, self._commit, envelope.id, data, chunks
        )

    def _commit(self, queue_id: str, data: bytes, chunks: Sequence[bytes]) -> str:
        spool = self.spool
        tmp_msg, tmp_env = spool.tmp_dir / f"{queue_id}.msg", spool.tmp_dir / f"{queue_id}.env"
        for path, parts in ((tmp_msg, chunks), (tmp_env, [data])):
            with open(path, "wb") as handle:
                handle.writelines(parts)
                handle.flush()
                os.fdatasync(handle.fileno())
        os.rename(tmp_msg, spool.message_path(queue_id))
        _fsync_dir(spool.msg_dir)
        os.rename(tmp_env, spool.envelope_path(queue_id))
        _fsync_dir(spool.env_dir)
        return queue_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_committer(mode: str, directory: Path, args: argparse.Namespace, reactor: Any) -> Any:
    """The object whose ``accept`` is measured."""
    if mode == "group":
        return Spool(directory, threads=args.threads, max_batch=args.max_batch, reactor=reactor)
    if mode == "serial":
        return Spool(directory, threads=1, max_batch=1, reactor=reactor)
    if mode == "nofsync":
        return Spool(directory, fsync=False, threads=args.threads, reactor=reactor)
    return PerMessageCommit(directory, args.threads, reactor)


async def measure(
    reactor: Any, committer: Any, size: int, concurrency: int, seconds: float
) -> float:
    """Keep ``concurrency`` accepts in flight for ``seconds``; return accepts per second."""
    header = b"Received: from bench by bench; now\r\nSubject: bench\r\n\r\n"
    body = (b"x" * 76 + b"\r\n") * (size // 78 + 1)
    chunks = [header, body[:size]]
    done = 0
    finished: defer.Deferred[None] = defer.Deferred()
    in_flight = concurrency
    stop_at = time.monotonic() + seconds
    spool: Spool = committer.spool if isinstance(committer, PerMessageCommit) else committer

    def one() -> None:
        envelope = SpoolEnvelope(spool.new_id(), "a@bench.test", [SpoolRecipient("b@t")], 0.0)
        committer.accept(envelope, chunks).addCallbacks(next_one, failed)

    def next_one(_: Any) -> None:
        nonlocal done, in_flight
        done += 1
        if time.monotonic() < stop_at:
            one()
            return
        in_flight -= 1
        if in_flight == 0:
            finished.callback(None)

    def failed(failure: Any) -> None:
        if not finished.called:
            finished.errback(failure)

    started = time.monotonic()
    for _ in range(concurrency):
        one()
    await finished
    return done / (time.monotonic() - started)


async def run_cell(
    reactor: Any, mode: str, size: int, concurrency: int, args: argparse.Namespace
) -> float:
    """One measurement in a fresh temporary spool, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=f"spool-{mode}-", dir=args.dir))
    try:
        committer = make_committer(mode, base / "queue", args, reactor)
        committer.start()
        try:
            return await measure(reactor, committer, size, concurrency, args.seconds)
        finally:
            await committer.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


async def main(reactor: Any, args: argparse.Namespace) -> None:
    """Run every cell ``--runs`` times and print the report."""
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}; choose from {', '.join(MODES)}")
    cells = [(s, c) for s in args.sizes for c in args.concurrency]
    results: dict[tuple[str, int, int], list[float]] = {}
    for round_ in range(args.runs):  # rounds interleave the modes, so noise hits all alike
        for size, concurrency in cells:
            for mode in modes:
                rate = await run_cell(reactor, mode, size, concurrency, args)
                results.setdefault((mode, size, concurrency), []).append(rate)
                print(
                    f"round {round_ + 1}: {mode:8} {size:>7} B C={concurrency:<3} "
                    f"{rate:8.0f} accepts/s",
                    file=sys.stderr,
                )
    print(f"# Spool commit: accepts/s, median of {args.runs} runs of {args.seconds} s")
    print(f"\nthreads={args.threads}, max_batch={args.max_batch}, disk: {args.dir or '/tmp'}\n")
    print("| mode | size | C | accepts/s (min-max) | vs threads | vs serial |")
    print("|---|---|---|---|---|---|")
    for size, concurrency in cells:
        medians = {m: statistics.median(results[(m, size, concurrency)]) for m in modes}
        for mode in modes:
            runs = results[(mode, size, concurrency)]
            print(
                f"| {mode} | {size} | {concurrency} | {medians[mode]:,.0f} "
                f"({min(runs):,.0f}-{max(runs):,.0f}) | "
                f"{_ratio(medians[mode], medians.get('threads', 0))} | "
                f"{_ratio(medians[mode], medians.get('serial', 0))} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--sizes", type=ints, default=[4096, 102400], help="message bytes")
    parser.add_argument("--concurrency", type=ints, default=[10, 50], help="accepts in flight")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--threads", type=int, default=4, help="commit threads")
    parser.add_argument("--max-batch", type=int, default=64, help="group commit batch limit")
    parser.add_argument("--dir", default=None, help="where the spools go (the disk measured)")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))


if __name__ == "__main__":
    run()
