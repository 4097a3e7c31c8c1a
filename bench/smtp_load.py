"""SMTP load generator: N concurrent sessions, 1 recipient, no PIPELINING, loopback only.

Two modes:

* ``persistent``: each of the N connections sends message after message (the next MAIL follows
  the 250 after the final dot) until the time or message budget is spent, then QUIT.
* ``per-connection``: every message is connect + EHLO + MAIL/RCPT/DATA + QUIT on a new connection.

It reports messages/s (completed transactions over wall time) and the latency of each whole
transaction, from writing MAIL to reading the 250 after ".", as p50/p99, and the p50 of each of
its replies (MAIL, RCPT, DATA, and the end of data: the message sent, its 250 read). The run is
bounded by time (``--seconds``, new transactions stop at the deadline) and by count
(``--max-messages``); a hard limit (deadline + ``--grace``) aborts transactions still open after
that.

Usage::

    python bench/smtp_load.py --port 2525 -c 10 --size 4096 --mode persistent --seconds 2.5
    python bench/smtp_load.py --port 2525 --json      # one JSON document on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

MODES = ("persistent", "per-connection")
#: The replies of one transaction, each timed from the write before it to its last line.
STEPS = ("MAIL", "RCPT", "DATA", "end of data")
LINE_WIDTH = 78
MAX_ERROR_SAMPLES = 5


class SMTPReplyError(Exception):
    """The server answered with a code other than the one expected."""

    def __init__(self, step: str, code: int, text: str) -> None:
        """Remember which step failed and the reply the server gave."""
        super().__init__(f"{step}: {code} {text}")
        self.code = code


@dataclass(frozen=True)
class LoadConfig:
    """What to send, where, how much and for how long."""

    port: int
    host: str = "127.0.0.1"
    concurrency: int = 10
    size: int = 4096
    mode: str = "persistent"
    seconds: float = 2.5
    max_messages: int = 1_000_000
    sender: str = "load@example.test"
    recipient: str = "bench@example.test"
    helo: str = "loadgen.localdomain"
    io_timeout: float = 30.0
    grace: float = 30.0
    max_errors: int = 100

    def check(self) -> None:
        """Raise ValueError for a configuration that is unusable or not on loopback."""
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"host must be a loopback IP address, not {self.host!r}") from None
        if not address.is_loopback:
            raise ValueError(f"host must be a loopback address, not {self.host}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 1 <= self.concurrency <= 1000:
            raise ValueError("concurrency must be between 1 and 1000")
        if not 0 <= self.size <= 64 * 1024 * 1024:
            raise ValueError("size must be between 0 and 64 MiB")
        if not 0 < self.seconds <= 3600:
            raise ValueError("seconds must be in (0, 3600]")
        if self.max_messages < 1:
            raise ValueError("max-messages must be at least 1")


@dataclass
class LoadResult:
    """What one run achieved."""

    config: LoadConfig
    completed: int = 0
    errors: int = 0
    connections: int = 0
    elapsed: float = 0.0
    aborted: bool = False
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    step_ms: dict[str, list[float]] = field(
        default_factory=lambda: {step: [] for step in STEPS}, repr=False
    )

    @property
    def rate(self) -> float:
        """Completed transactions per second of wall time."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, pct: float, step: str | None = None) -> float | None:
        """Nearest-rank percentile in ms of the transaction latencies, or of one ``step``'s
        (None without samples)."""
        samples = self.latencies_ms if step is None else self.step_ms[step]
        if not samples:
            return None
        ordered = sorted(samples)
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict:
        """A JSON-ready summary (no per-message samples)."""
        return {
            "client": "smtp_load.py",
            "config": asdict(self.config),
            "completed": self.completed,
            "errors": self.errors,
            "connections": self.connections,
            "elapsed_s": round(self.elapsed, 4),
            "msg_per_s": round(self.rate, 1),
            "latency_ms": {
                "p50": _round(self.percentile(50)),
                "p99": _round(self.percentile(99)),
                "max": _round(max(self.latencies_ms, default=None)),
            },
            "step_p50_ms": {step: _round(self.percentile(50, step)) for step in STEPS},
            "aborted": self.aborted,
            "error_samples": self.error_samples,
        }

    def line(self) -> str:
        """One human-readable line."""
        p50, p99 = self.percentile(50), self.percentile(99)
        lat = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms" if p50 is not None else "no samples"
        steps = ""
        if p50 is not None:
            parts = [f"{step} {self.percentile(50, step):.2f}" for step in STEPS]
            steps = f" (p50 per reply: {', '.join(parts)} ms)"
        return (
            f"{self.completed} messages in {self.elapsed:.2f} s = {self.rate:.1f} msg/s; "
            f"txn latency {lat}{steps}; {self.connections} connections; {self.errors} errors"
            + ("; ABORTED at the hard limit" if self.aborted else "")
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def build_body(size: int) -> bytes:
    """``size`` bytes of body in CRLF lines of at most 80 bytes, dot-safe, ending with CRLF."""
    lines: list[bytes] = []
    remaining = size
    number = 1
    while remaining > 0:
        take = min(LINE_WIDTH + 2, remaining)
        text = str(number).encode()
        filler = max(0, take - 2 - len(text))
        lines.append((text + b"X" * filler)[: max(0, take - 2)] + b"\r\n")
        remaining -= take
        number += 1
    return b"".join(lines)


def build_message(size: int, sender: str, recipient: str) -> tuple[bytes, bytes]:
    """A message as (headers before Message-Id, rest ending with the final dot line).

    The caller sends ``head + b"Message-Id: <...>\\r\\n" + tail`` so each message is unique.
    """
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: smtp_load {size} bytes\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
    ).encode()
    tail = b"\r\n" + build_body(size) + b".\r\n"
    return head, tail


class LoadRun:
    """The shared state of one run: budget, counters, samples."""

    def __init__(self, config: LoadConfig) -> None:
        """Prepare a run for ``config`` (validated)."""
        config.check()
        self.config = config
        self.result = LoadResult(config=config)
        self.head, self.tail = build_message(config.size, config.sender, config.recipient)
        self.started = 0
        self.deadline = 0.0
        self.stop = False

    def take_ticket(self) -> int | None:
        """A sequence number for the next transaction, or None when the budget is spent."""
        if self.stop or self.started >= self.config.max_messages:
            return None
        if time.monotonic() >= self.deadline:
            return None
        self.started += 1
        return self.started

    def record_error(self, exc: BaseException) -> None:
        """Count an error; stop the run when there are too many."""
        self.result.errors += 1
        if len(self.result.error_samples) < MAX_ERROR_SAMPLES:
            self.result.error_samples.append(f"{type(exc).__name__}: {exc}")
        if self.result.errors >= self.config.max_errors:
            self.stop = True

    async def reply(self, reader: asyncio.StreamReader, step: str, expect: int) -> None:
        """Read one (possibly multi-line) reply; raise unless its code is ``expect``."""
        text: list[str] = []
        for _ in range(1000):
            line = await asyncio.wait_for(reader.readline(), self.config.io_timeout)
            if not line:
                raise ConnectionError(f"{step}: connection closed by the server")
            decoded = line.decode("latin-1").rstrip("\r\n")
            text.append(decoded[4:])
            if len(decoded) < 4 or decoded[3] != "-":
                code = int(decoded[:3]) if decoded[:3].isdigit() else 0
                if code != expect:
                    raise SMTPReplyError(step, code, " / ".join(text))
                return
        raise SMTPReplyError(step, 0, "reply longer than 1000 lines")

    async def command(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: str, expect: int
    ) -> float:
        """Send one command line and check its reply; return how long the reply took in ms."""
        start = time.perf_counter()
        writer.write(cmd.encode() + b"\r\n")
        await self.reply(reader, cmd.split(" ", 1)[0], expect)
        return (time.perf_counter() - start) * 1000

    async def open_session(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect, read the greeting and say EHLO (HELO if EHLO is refused)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port), self.config.io_timeout
        )
        self.result.connections += 1
        try:
            await self.reply(reader, "greeting", 220)
            try:
                await self.command(reader, writer, f"EHLO {self.config.helo}", 250)
            except SMTPReplyError:
                await self.command(reader, writer, f"HELO {self.config.helo}", 250)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def close_session(self, reader, writer, polite: bool) -> None:
        """QUIT (when the session is in a clean state) and close the connection."""
        try:
            if polite:
                with contextlib.suppress(OSError, asyncio.TimeoutError, SMTPReplyError):
                    await self.command(reader, writer, "QUIT", 221)
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.config.io_timeout)

    async def transaction(self, reader, writer, seq: int) -> None:
        """MAIL, RCPT, DATA, the message and its final dot; record the latencies."""
        start = time.perf_counter()
        mail = await self.command(reader, writer, f"MAIL FROM:<{self.config.sender}>", 250)
        rcpt = await self.command(reader, writer, f"RCPT TO:<{self.config.recipient}>", 250)
        data = await self.command(reader, writer, "DATA", 354)
        sent = time.perf_counter()
        writer.write(self.head)
        writer.write(b"Message-Id: <%d.%d@loadgen.localdomain>\r\n" % (seq, time.time_ns()))
        writer.write(self.tail)
        await writer.drain()
        await self.reply(reader, "end of data", 250)
        end = time.perf_counter()
        self.result.latencies_ms.append((end - start) * 1000)
        for step, value in zip(STEPS, (mail, rcpt, data, (end - sent) * 1000), strict=True):
            self.result.step_ms[step].append(value)
        self.result.completed += 1

    async def persistent_worker(self) -> None:
        """One connection sending messages until the budget is spent; reconnects after errors."""
        session = None
        try:
            while (seq := self.take_ticket()) is not None:
                try:
                    if session is None:
                        session = await self.open_session()
                    await self.transaction(*session, seq)
                except (TimeoutError, OSError, SMTPReplyError) as exc:
                    self.record_error(exc)
                    if session is not None:
                        await self.close_session(*session, polite=False)
                        session = None
            if session is not None:
                await self.close_session(*session, polite=True)
                session = None
        finally:
            if session is not None:
                session[1].close()

    async def per_connection_worker(self) -> None:
        """Connect, EHLO, one transaction, QUIT; again until the budget is spent."""
        while (seq := self.take_ticket()) is not None:
            session = None
            try:
                session = await self.open_session()
                await self.transaction(*session, seq)
                await self.close_session(*session, polite=True)
                session = None
            except (TimeoutError, OSError, SMTPReplyError) as exc:
                self.record_error(exc)
            finally:
                if session is not None:
                    await self.close_session(*session, polite=False)

    async def run(self) -> LoadResult:
        """Run all workers; return the result."""
        persistent = self.config.mode == "persistent"
        worker = self.persistent_worker if persistent else self.per_connection_worker
        start = time.monotonic()
        self.deadline = start + self.config.seconds
        tasks = [asyncio.ensure_future(worker()) for _ in range(self.config.concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=self.config.seconds + self.config.grace)
        if pending:
            self.result.aborted = True
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5)
        self.result.elapsed = time.monotonic() - start
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                self.record_error(task.exception())
        return self.result


def run_load(config: LoadConfig) -> LoadResult:
    """Run one load test to completion (blocking) and return its result."""
    return asyncio.run(LoadRun(config).run())


def parse_args(argv: list[str] | None = None) -> tuple[LoadConfig, bool]:
    """Turn the command line into a validated LoadConfig and the ``--json`` flag."""
    parser = argparse.ArgumentParser(
        description="SMTP acceptance load generator (loopback only, no PIPELINING)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback IP address of the server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-c", "--concurrency", type=int, default=10, help="parallel sessions")
    parser.add_argument("--size", type=int, default=4096, help="body bytes per message")
    parser.add_argument("--mode", choices=MODES, default="persistent")
    parser.add_argument("--seconds", type=float, default=2.5, help="stop starting new messages")
    parser.add_argument("--max-messages", type=int, default=1_000_000, help="message budget")
    parser.add_argument("--from", dest="sender", default="load@example.test")
    parser.add_argument("--to", dest="recipient", default="bench@example.test")
    parser.add_argument("--io-timeout", type=float, default=30.0, help="per reply, seconds")
    parser.add_argument("--grace", type=float, default=30.0, help="hard limit after --seconds")
    parser.add_argument("--max-errors", type=int, default=100, help="stop after this many")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    config = LoadConfig(
        host=args.host,
        port=args.port,
        concurrency=args.concurrency,
        size=args.size,
        mode=args.mode,
        seconds=args.seconds,
        max_messages=args.max_messages,
        sender=args.sender,
        recipient=args.recipient,
        io_timeout=args.io_timeout,
        grace=args.grace,
        max_errors=args.max_errors,
    )
    try:
        config.check()
    except ValueError as exc:
        parser.error(str(exc))
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit status 1 when no message was accepted."""
    config, as_json = parse_args(argv)
    result = run_load(config)
    if as_json:
        print(json.dumps(result.summary()))
    else:
        print(result.line())
        for sample in result.error_samples:
            print(f"  error: {sample}")
    return 0 if result.completed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
