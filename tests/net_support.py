"""SMTP, POP3 and IMAP listeners on real sockets, in this process, with a fake clock.

The listeners run on a private reactor thread (:class:`tests.test_spool_reactor.ReactorThread`);
their sessions' timers and the per-IP limiter run on a :class:`twisted.internet.task.Clock`, so
tests move time forward themselves. Only what happens before log-in is served (no directory,
no spool): enough for connection handling.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import task

from mailmax.core.config import parse
from mailmax.core.hooks import PluginSet
from mailmax.core.imap.factory import IMAPFactory
from mailmax.core.net.limits import ConnectionLimiter
from mailmax.core.pop3.server import POP3Factory
from mailmax.core.smtp.factory import SMTPFactory
from mailmax.core.tls import server_options, write_self_signed
from tests.test_spool_reactor import ReactorThread, running_reactor

#: Each protocol: a command to pipeline before log-in, and the start of the refusal line.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "smtp": {"command": b"EHLO client.example\r\n", "refusal": b"421 4.7.0 "},
    "pop3": {"command": b"CAPA\r\n", "refusal": b"-ERR [SYS/TEMP] "},
    "imap": {"command": b"a CAPABILITY\r\n", "refusal": b"* BYE "},
}
#: What each protocol answers to its command (the end of the reply).
REPLY_ENDS = {"smtp": b"\r\n250 ", "pop3": b"\r\n.\r\n", "imap": b"a OK "}


@dataclass
class Listener:
    """One listening factory and its port."""

    factory: Any
    port: Any
    rt: ReactorThread
    clock: task.Clock
    address: tuple[str, int] = field(init=False)

    def __post_init__(self) -> None:
        host = self.port.getHost()
        self.address = (host.host, host.port)

    def connect(
        self, source: str = "127.0.0.1", rcvbuf: int = 0, tls: bool = False
    ) -> socket.socket:
        """A client socket connected from ``source`` (any 127.0.0.0/8 address); with ``tls``
        wrapped in TLS (the test certificate is not verified)."""
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.bind((source, 0))
        client.settimeout(10)
        client.connect(self.address)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client = context.wrap_socket(client, server_hostname="localhost")
        return client

    def sessions(self) -> list[Any]:
        """The factory's open sessions (read on the reactor thread)."""
        return self.rt.call(lambda: list(self.factory.sessions))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` (run on the reactor thread) is true."""
        deadline = time.monotonic() + timeout
        while not self.rt.call(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"{predicate} still false after {timeout}s")
            time.sleep(0.01)

    def advance(self, seconds: float) -> None:
        """Move the sessions' and the limiter's clock forward."""
        self.rt.call(self.clock.advance, seconds)


def read_line(client: socket.socket) -> bytes:
    """The next line the server sent (with its CRLF); b"" once the server closed."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = client.recv(1)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return data


def read_until(client: socket.socket, marker: bytes) -> bytes:
    """What the server sent up to and including the line that contains ``marker``."""
    data = b""
    while marker not in data or not data.endswith(b"\n"):
        chunk = client.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}: {data[-300:]!r}")
        data += chunk
    return data


def _tls_options() -> Any:
    if not _certificates:
        folder = Path(tempfile.mkdtemp(prefix="mailmax-net-tls-"))
        atexit.register(shutil.rmtree, folder, True)
        write_self_signed(folder / "cert.pem", folder / "key.pem", ["localhost"])
        _certificates.append(server_options(folder / "cert.pem", folder / "key.pem"))
    return _certificates[0]


_certificates: list[Any] = []


def build_listener(
    rt: ReactorThread, service: str, tls: bool = False, **connections: Any
) -> Listener:
    """A listener of ``service`` (smtp, pop3 or imap) on 127.0.0.1, port chosen by the system,
    with ``connections`` as its ``[connections]`` settings; TLS from the first byte with
    ``tls``."""
    clock = task.Clock()
    settings = parse(
        {
            "server": {"hostname": "mail.example.test"},
            "listeners": [{"service": service, "address": "127.0.0.1", "port": 0}],
            "connections": connections,
        }
    )
    common: dict[str, Any] = {
        "settings": settings,
        "listener": settings.listeners[0],
        "directory": None,
        "plugins": lambda: PluginSet([]),
        "tls_options": _tls_options() if tls else None,
        "reactor": clock,
        "limiter": ConnectionLimiter.from_settings(settings.connections, clock),
    }
    if service == "smtp":
        factory: Any = SMTPFactory(spool=None, **common)
    elif service == "pop3":
        factory = POP3Factory(**common)
    else:
        factory = IMAPFactory(**common)
    if tls:
        port = rt.call(rt.reactor.listenSSL, 0, factory, _tls_options(), interface="127.0.0.1")
        port.factory._clock = rt.reactor  # TLS writes are flushed by this reactor
    else:
        port = rt.call(rt.reactor.listenTCP, 0, factory, interface="127.0.0.1")
    return Listener(factory, port, rt, clock)


def reactor_with_listeners() -> Iterator[ReactorThread]:
    """Body of a fixture: a private running reactor (listeners stop with it)."""
    yield from running_reactor()
