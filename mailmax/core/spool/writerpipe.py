"""The spool's end of the pipe to its writer process: replies in, a widened pipe out."""

from __future__ import annotations

import contextlib
import fcntl
import json
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from mailmax.core.spool import writer as spoolwriter

if TYPE_CHECKING:
    from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.spool")


#: What the pipe to the writer process may hold (Linux; 64 KiB otherwise): a message of up
#: to about this size goes to the writer in one write, not in pieces over several turns of
#: the reactor.
PIPE_BYTES = 1024 * 1024


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Ask for a pipe buffer of ``size`` bytes on ``fd`` (halving it down to 64 KiB while the
    system's limit refuses it)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:
        return
    while size > 64 * 1024:
        try:
            fcntl.fcntl(fd, setsize, size)
            return
        except OSError:
            size //= 2


class WriterPipe(ProcessProtocol):
    """The spool's end of the pipe to its writer process."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.buffer = bytearray()
        self.stopped = False

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Replies: committed, failed, stopped."""
        if childFD != 1:
            return
        self.buffer += data
        try:
            replies = spoolwriter.parse_replies(self.buffer)
        except ValueError as exc:
            log.error("spool writer: {error}; restarting it", error=str(exc))
            self.pipe.signalProcess("KILL")
            return
        results: list[tuple[str, BaseException | None]] = []
        for kind, queue_id, code, text in replies:
            if kind == "X":
                self.stopped = True
            elif kind == "J":
                self.spool._called(json.loads(text))
            else:
                results.append((queue_id, OSError(code, text) if kind == "E" else None))
        if results:
            self.spool._answer(results)

    def childConnectionLost(self, childFD: int) -> None:
        """The writer's output closed: it stopped (or died)."""
        if childFD == 1:
            with contextlib.suppress(Exception):
                self.pipe.reapProcess()  # no SIGCHLD handling when the reactor is not main
            self.spool._helper_gone(self)

    def connectionMade(self) -> None:
        """Widen the pipe the messages go through (:func:`widen_pipe`)."""
        with contextlib.suppress(Exception):
            widen_pipe(self.pipe.pipes[0].fileno())

    @property
    def pipe(self) -> Any:
        """The process transport."""
        return self.transport
