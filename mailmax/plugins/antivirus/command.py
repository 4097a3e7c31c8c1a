"""An external scanner: any command line, run without a shell, with a time limit.

``%d`` in the command is replaced by a folder holding the message's attachments, decoded, one
file each; ``%M`` by the path of a file holding the whole message. The scanner says "infected"
by removing a file (the usual way of command-line scanners that clean or delete), or by exiting
with one of the statuses the administrator names; any other status but 0 means the scanner
failed, and a failure is never taken for "clean". It runs in a temporary folder of its own that is
always removed afterwards; what it prints is kept for the log and never sent to a client.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from mailmax.core.programs import ProgramError, run_program, split_program
from mailmax.plugins.antivirus.clamdclient import ScannerError
from mailmax.plugins.antivirus.mime import attachments, safe_file_name


@dataclass(frozen=True)
class CommandVerdict:
    """What one run found: the names of the removed files, the exit status and the output."""

    removed: tuple[str, ...]
    status: int | None
    infected_status: bool
    output: str = field(repr=False)

    @property
    def infected(self) -> bool:
        """Whether the command removed a file or exited with an "infected" status."""
        return bool(self.removed) or self.infected_status

    @property
    def virus(self) -> str | None:
        """A name for the log and the replies: what was removed, or the exit status."""
        if self.removed:
            return "removed by the scanner: " + ", ".join(self.removed)
        if self.infected_status:
            return f"scanner exit status {self.status}"
        return None


def split_command(command: str) -> list[str]:
    """The argument list of ``command``; refuses one that cannot work (``ValueError``)."""
    argv = split_program(command, "scanner")
    if not any("%d" in arg or "%M" in arg for arg in argv):
        raise ValueError("the scanner command must name %d (the attachments) or %M (the message)")
    return argv


def _prepare(folder: Path, message: bytes, max_depth: int) -> list[str]:
    (folder / "attachments").mkdir()
    (folder / "message.eml").write_bytes(message)
    names = []
    for number, part in enumerate(attachments(message, max_depth), 1):
        name = safe_file_name(part, number)
        (folder / "attachments" / name).write_bytes(part.payload)
        names.append(name)
    return names


class CommandScanner:
    """Runs ``command`` (already split) on each message; see the module's description."""

    def __init__(
        self,
        reactor: Any,
        argv: list[str],
        timeout: float,
        infected_statuses: frozenset[int] = frozenset(),
        max_depth: int = 8,
    ) -> None:
        self.reactor = reactor
        self.argv = argv
        self.timeout = timeout
        self.infected_statuses = infected_statuses
        self.max_depth = max_depth

    async def scan(self, message: bytes) -> CommandVerdict:
        """Run the command on ``message``; raises :class:`ScannerError` when it cannot judge."""
        folder = Path(await self._in_thread(tempfile.mkdtemp, None, "mailmax-scan-"))
        try:
            names = await self._in_thread(_prepare, folder, message, self.max_depth)
            argv = [
                arg.replace("%d", str(folder / "attachments")).replace(
                    "%M", str(folder / "message.eml")
                )
                for arg in self.argv
            ]
            status, output = await self._run(argv, folder)
            present = set(await self._in_thread(os.listdir, folder / "attachments"))
        finally:
            await self._in_thread(shutil.rmtree, folder, True)
        removed = tuple(name for name in names if name not in present)
        infected_status = status in self.infected_statuses
        if status != 0 and not infected_status and not removed:
            failed = f"the scanner {argv[0]} failed with status {status}: {output[-200:]}"
            raise ScannerError(failed)
        return CommandVerdict(removed, status, infected_status, output)

    def _in_thread(self, fn: Any, *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    async def _run(self, argv: list[str], folder: Path) -> tuple[int, str]:
        try:
            result = await run_program(self.reactor, argv, str(folder), self.timeout)
        except ProgramError as exc:
            raise ScannerError(f"the scanner failed: {exc}") from exc
        return result.status, result.output
