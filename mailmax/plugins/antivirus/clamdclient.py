"""A non-blocking client for clamd: INSTREAM scans, PING, VERSION and RELOAD.

clamd speaks a small protocol on a unix or TCP socket: a command prefixed with ``z`` and ended
by a NUL byte, answered by one NUL-terminated line. ``INSTREAM`` is followed by the data in
chunks, each preceded by its length as four bytes (big-endian), and a chunk of length zero.

The client runs on the reactor: no thread waits on a socket, a scan costs a connection and a
few writes, and :class:`ClamdClient` bounds how many scans run at once (clamd has a fixed number
of threads; more connections would only queue there while holding memory here). Every call has a
time limit; a timeout, a refused connection or an ``ERROR`` reply raises :class:`ScannerError`,
which the plugin turns into a temporary failure — never into "clean".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, endpoints, error, protocol
from twisted.internet.interfaces import IStreamClientEndpoint

#: Bytes per INSTREAM chunk (clamd refuses a chunk over its StreamMaxLength).
CHUNK = 64 * 1024
#: The longest reply accepted; clamd's are one short line.
MAX_REPLY = 4096


class ScannerError(Exception):
    """The scanner could not give a verdict: unreachable, too slow, or it answered an error."""


@dataclass(frozen=True)
class ClamdVerdict:
    """What clamd said of one stream: ``virus`` is the signature name, ``None`` when clean."""

    virus: str | None

    @property
    def infected(self) -> bool:
        """Whether clamd found something."""
        return self.virus is not None


def parse_instream_reply(reply: str) -> ClamdVerdict:
    """Read ``stream: OK`` / ``stream: NAME FOUND``; anything else raises :class:`ScannerError`."""
    if reply.startswith("stream: "):
        rest = reply[len("stream: ") :]
        if rest == "OK":
            return ClamdVerdict(None)
        if rest.endswith(" FOUND") and len(rest) > len(" FOUND"):
            return ClamdVerdict(rest[: -len(" FOUND")])
    raise ScannerError(f"clamd answered: {reply}")


def endpoint_for(reactor: Any, address: str, timeout: float) -> IStreamClientEndpoint:
    """The client endpoint for ``address``: an absolute unix socket path, or ``host:port``."""
    if address.startswith("/"):
        return endpoints.UNIXClientEndpoint(reactor, address, timeout=timeout)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(
            f"{address!r} is neither a unix socket path (starting with /) nor host:port"
        )
    return endpoints.HostnameEndpoint(reactor, host.strip("[]"), int(port), timeout=timeout)


class _CommandProtocol(protocol.Protocol):
    """Send one command (and its stream), read one NUL-terminated reply, then hang up."""

    def __init__(self, command: bytes, payload: bytes | None) -> None:
        self.command = command
        self.payload = payload
        self.buffer = b""
        self.reply: defer.Deferred[str] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"z" + self.command + b"\0")
        if self.payload is not None:
            view = memoryview(self.payload)
            for start in range(0, len(view), CHUNK):
                piece = view[start : start + CHUNK]
                self.transport.writeSequence([struct.pack("!L", len(piece)), bytes(piece)])
            self.transport.write(struct.pack("!L", 0))

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        end = self.buffer.find(b"\0")
        if end < 0 and len(self.buffer) <= MAX_REPLY:
            return
        self.transport.loseConnection()
        if not self.reply.called:
            if end < 0:
                self.reply.errback(ScannerError("clamd's reply is too long"))
            else:
                self.reply.callback(self.buffer[:end].decode("utf-8", "replace"))

    def connectionLost(self, reason: Any = None) -> None:
        if not self.reply.called:
            self.reply.errback(ScannerError("clamd closed the connection without a reply"))


class ClamdClient:
    """Talks to one clamd at ``address`` (unix socket path or ``host:port``).

    ``timeout`` bounds each call, connection included; ``parallel`` bounds the scans in
    flight at once (the rest wait their turn, in order).
    """

    def __init__(self, reactor: Any, address: str, timeout: float, parallel: int = 4) -> None:
        self.reactor = reactor
        self.address = address
        self.timeout = timeout
        self._endpoint = endpoint_for(reactor, address, timeout)
        self._slots = defer.DeferredSemaphore(max(1, parallel))

    async def _call(self, command: bytes, payload: bytes | None = None) -> str:
        proto = _CommandProtocol(command, payload)
        try:
            connecting = endpoints.connectProtocol(self._endpoint, proto)
            connecting.addTimeout(self.timeout, self.reactor)
            await connecting
        except (OSError, error.ConnectError, defer.TimeoutError, defer.CancelledError) as exc:
            raise ScannerError(f"cannot reach clamd at {self.address}: {exc}") from exc
        proto.reply.addTimeout(self.timeout, self.reactor)
        try:
            return await proto.reply
        except defer.TimeoutError as exc:
            if proto.transport is not None:
                proto.transport.abortConnection()
            silent = f"clamd at {self.address} gave no answer in {self.timeout:g} s"
            raise ScannerError(silent) from exc

    async def scan(self, data: bytes) -> ClamdVerdict:
        """Scan ``data`` with INSTREAM; waits for a free slot first."""
        await self._slots.acquire()
        try:
            return parse_instream_reply(await self._call(b"INSTREAM", data))
        finally:
            self._slots.release()

    async def ping(self) -> bool:
        """Whether clamd answers ``PONG``."""
        return await self._call(b"PING") == "PONG"

    async def version(self) -> str:
        """clamd's version line, e.g. ``ClamAV 1.4.6/27000/Mon Dec  7 09:00:00 2026``."""
        return await self._call(b"VERSION")

    async def reload(self) -> None:
        """Ask clamd to reload its signature database."""
        reply = await self._call(b"RELOAD")
        if reply != "RELOADING":
            raise ScannerError(f"clamd answered RELOAD with: {reply}")
