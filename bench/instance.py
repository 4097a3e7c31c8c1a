"""What the throwaway server instances of the benchmarks share (Postfix, Haraka), and
:class:`ProcessGroup`, a server process in its own session stopped with its whole group.

An instance lives in a new temporary directory, listens on a loopback port, delivers one domain
into one Maildir, and is stopped on leaving a ``with`` block, also on error. :func:`serve` runs
one from the command line until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Self

from netutil import LOOPBACK, free_port, require_loopback

#: Seconds a server has to stop before it is killed.
STOP_TIMEOUT = 15.0


class ProcessGroup:
    """A child process in its own session, stopped with its whole process group."""

    def __init__(self, argv: list[str], cwd: Path, log: Path) -> None:
        """Start ``argv`` in ``cwd`` with stdout and stderr appended to ``log``."""
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log = log

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the group, then SIGKILL after ``timeout`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers left in the group

    def tail(self, lines: int = 12) -> str:
        """The last lines of the log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ThrowawayInstance(ABC):
    """One throwaway server instance; use as a context manager so it is always stopped."""

    #: Short name, used in the directory's name and in messages.
    kind = "server"

    def __init__(
        self,
        port: int | None = None,
        domain: str = "example.test",
        host: str = LOOPBACK,
        keep: bool = False,
        parent: Path | None = None,
    ) -> None:
        """Prepare (but do not start) an instance listening on ``host:port``, with its files
        in a new directory under ``parent`` (default: the temporary directory)."""
        self.host = require_loopback(host)
        self.port = port or free_port(host)
        self.domain = domain
        self.keep = keep
        self.base = Path(tempfile.mkdtemp(prefix=f"mailmax-bench-{self.kind}-", dir=parent))
        self.maildir = self.base / "Maildir"
        self.log = self.base / f"{self.kind}.log"

    @abstractmethod
    def start(self, timeout: float = 30) -> None:
        """Write the configuration, start the server and wait for its SMTP greeting."""

    @abstractmethod
    def stop(self, timeout: float = 15) -> None:
        """Stop the server (bounded; idempotent) and, unless kept, remove the directory."""

    @abstractmethod
    def session_leader(self) -> int | None:
        """The pid whose session holds every process of the server, None when stopped."""

    def alive(self) -> bool:
        """True while the server runs."""
        return self.session_leader() is not None

    def delivered(self) -> int:
        """Messages in the Maildir (new/ and cur/)."""
        return sum(1 for sub in ("new", "cur") for _ in os.scandir(self.maildir / sub))

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {self.log.name})"

    def remove_unless_kept(self) -> None:
        """Remove the instance's directory unless it is to be kept."""
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        """Start the instance; it is stopped on exit, also on error."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the instance."""
        self.stop()


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line every instance script takes: ``--port``, ``--domain``, ``--keep``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--domain", default="example.test")
    parser.add_argument("--keep", action="store_true", help="keep the directory after stopping")
    return parser


def serve(kind: str, make: Callable[[], ThrowawayInstance], title: Callable[[], str]) -> int:
    """Start the instance ``make()`` gives, say where it is (``title()`` names the software),
    and stop it on Ctrl-C or SIGTERM; the exit status (1 when it cannot start)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with make() as instance:
            print(f"{title()} listening on {instance.host}:{instance.port}", flush=True)
            print(f"directory {instance.base}; Maildir {instance.maildir}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except RuntimeError as exc:
        print(f"{kind}: {exc}", file=sys.stderr)
        return 1
    return 0
