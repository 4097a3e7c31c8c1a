"""Running an administrator's program from the server: no shell, a time limit, bounded output.

Plugins run outside programs (a virus scanner's command line, a rule's test program, a
definition update). :func:`split_program` checks a command line when it is configured;
:func:`run_program` runs it on the reactor without a shell, in a working folder the caller
chooses, with a small fixed environment and no input, and kills it when its time is up. What it
prints (both streams, at most :data:`MAX_OUTPUT` bytes) is returned for the log; it is never
meant to be shown to a mail client.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready

#: The most output kept from one run.
MAX_OUTPUT = 16 * 1024
#: The environment a program gets: enough to find programs, nothing of the server's.
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class ProgramError(Exception):
    """The program could not be run, was killed, or ran out of time."""


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended: its exit status and what it printed."""

    status: int
    output: str


def split_program(command: str, what: str = "program") -> list[str]:
    """The argument list of ``command``, its program looked up on :data:`ENVIRONMENT`'s path.

    Raises ``ValueError`` saying what is wrong when the line cannot be read, is empty, or names
    no executable program.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"the {what} command cannot be read: {exc}") from exc
    if not argv:
        raise ValueError(f"the {what} command is empty")
    program = shutil.which(argv[0], path=ENVIRONMENT["PATH"])
    if program is None:
        raise ValueError(f"the {what} {argv[0]!r} is not an executable file")
    return [program, *argv[1:]]


class _Collect(protocol.ProcessProtocol):
    """Keeps the first :data:`MAX_OUTPUT` bytes of output and reports the exit."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.closed: set[int] = set()
        self.reaper: task.LoopingCall | None = None
        self.output = bytearray()
        self.ended: defer.Deferred[int | None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        room = MAX_OUTPUT - len(self.output)
        if room > 0:
            self.output += data[:room]

    errReceived = outReceived

    def childConnectionLost(self, childFD: int) -> None:
        self.closed.add(childFD)
        if {1, 2} <= self.closed and self.reaper is None:
            # A reactor outside the main thread has no SIGCHLD handler: look for the exit.
            self.reaper = task.LoopingCall(self._reap)
            self.reaper.clock = self.clock
            self.reaper.start(0.02)

    def _reap(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.reapProcess()  # type: ignore[union-attr]

    def processEnded(self, reason: Any) -> None:
        if self.reaper is not None and self.reaper.running:
            self.reaper.stop()
        self.ended.callback(getattr(reason.value, "exitCode", None))


async def run_program(reactor: Any, argv: list[str], cwd: str, timeout: float) -> ProgramResult:
    """Run ``argv`` in ``cwd``; its exit status and output.

    Raises :class:`ProgramError` when it cannot be started, is killed by a signal, or is still
    running after ``timeout`` seconds (it is then killed).
    """
    collect = _Collect(reactor)
    try:
        process = reactor.spawnProcess(collect, argv[0], argv, env=ENVIRONMENT, path=cwd)
    except OSError as exc:
        raise ProgramError(f"cannot run {argv[0]}: {exc}") from exc

    def kill() -> None:
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess(signal.SIGKILL)

    timer = reactor.callLater(timeout, kill)
    status = await collect.ended
    output = collect.output.decode("utf-8", "replace")
    if not timer.active():
        raise ProgramError(f"{argv[0]} took longer than {timeout:g} s and was stopped")
    timer.cancel()
    if status is None:
        raise ProgramError(f"{argv[0]} was killed by a signal: {output[-200:]}")
    return ProgramResult(int(status), output)
