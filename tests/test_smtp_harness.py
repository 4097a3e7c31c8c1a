"""Helpers for driving the SMTP protocol in-process (StringTransport + Clock); no tests here."""

from __future__ import annotations

import atexit
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from twisted.internet import interfaces
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mailmax.core import config
from mailmax.core.authlimit import AuthLimiter, RecentLogins
from mailmax.core.directory.api import Domain, User
from mailmax.core.directory.cached import AsyncDirectory
from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.hooks import PluginSet
from mailmax.core.smtp.factory import SMTPFactory
from mailmax.core.smtp.server import SMTPServer
from mailmax.core.spool.envelope import SpoolEnvelope
from mailmax.core.spool.spool import Spool


@implementer(interfaces.ITLSTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport that records STARTTLS and what was written before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls_options: Any = None
        self.before_tls = b""

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        self.tls_options = contextFactory
        self.before_tls = self.value()
        self.clear()


@implementer(interfaces.ISSLTransport)
class ImplicitTLSTransport(StringTransport):
    """A transport that is TLS from the first byte (an smtps port)."""

    def getPeerCertificate(self) -> None:
        return None


#: Real argon2id, with parameters cheap enough for hundreds of test logins.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
_template: list[Path] = []


def template_database() -> Path:
    """A directory database with example.test, alice (clear password kept) and bob; made once."""
    if not _template:
        root = Path(tempfile.mkdtemp(prefix="mailmax-smtp-template-"))
        atexit.register(shutil.rmtree, root, True)
        sql = SQLDirectory.open(
            f"sqlite:///{root / 'mailmax.db'}", base_dir=root, password_hasher=FAST_HASHER
        )
        try:
            sql.add_domain("example.test", str(root / "mail" / "example.test"))
            sql.add_user("alice@example.test", "alicesecret", keep_clear=True)
            sql.add_user("bob@example.test", "bobsecret")
        finally:
            sql.close()
        _template.append(root / "mailmax.db")
    return _template[0]


class PumpClock(Clock):
    """A Clock that also takes ``callFromThread`` work (the spool's and the directory's threads)
    and runs it when the test pumps."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue[tuple[Any, tuple[Any, ...], dict[str, Any]]] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.from_threads.put((f, args, kwargs))

    def pump(self, until: Any, timeout: float = 10.0) -> None:
        """Run thread results until ``until()`` is true; fail loudly after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the spool or directory did not answer in time")
            try:
                f, args, kwargs = self.from_threads.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                continue
            f(*args, **kwargs)


@dataclass
class World:
    """Settings, directory, spool and plugins for protocol tests."""

    smtp: dict[str, Any] = field(default_factory=dict)
    service: str = "smtp"
    default_domain: str = "example.test"
    display_name: str = ""
    tls: bool = True
    plugins: PluginSet = field(default_factory=lambda: PluginSet([]))
    #: Failed-login limits; by default no delays (tests of the delays pass their own).
    authlimit: AuthLimiter = field(
        default_factory=lambda: AuthLimiter(failure_delay=0.0, max_failure_delay=0.0)
    )

    def __post_init__(self) -> None:
        self.settings = config.parse(
            {
                "server": {"hostname": "mx.example.test"},
                "smtp": self.smtp,
                "listeners": [
                    {
                        "service": self.service,
                        "port": 2525,
                        "default_domain": self.default_domain,
                        "display_name": self.display_name,
                    }
                ],
            }
        )
        self.clock = PumpClock()
        self.root = Path(tempfile.mkdtemp(prefix="mailmax-smtp-test-"))
        shutil.copy(template_database(), self.root / "mailmax.db")
        self.sql = SQLDirectory.open(
            f"sqlite:///{self.root / 'mailmax.db'}", base_dir=self.root, password_hasher=FAST_HASHER
        )
        self.pool = DaemonThreadPool(minthreads=1, maxthreads=2, name="test-directory")
        self.pool.start()
        self.directory = AsyncDirectory(self.sql, reactor=self.clock, threadpool=self.pool)
        self.spool = Spool(self.root / "queue", fsync=False, threads=2, reactor=self.clock)
        self.spool.start()
        _worlds.append(self)
        self.factory = SMTPFactory(
            settings=self.settings,
            listener=self.settings.listeners[0],
            directory=self.directory,
            spool=self.spool,  # type: ignore[arg-type]
            plugins=lambda: self.plugins,
            tls_options=object() if self.tls else None,  # type: ignore[arg-type]
            reactor=self.clock,
            authlimit=self.authlimit,
            logins=RecentLogins(clock=self.clock.seconds),
        )

    def connect(self, peer: str = "192.0.2.10", implicit_tls: bool = False) -> Client:
        """A new session with the greeting already read."""
        kind = ImplicitTLSTransport if implicit_tls else TLSStringTransport
        transport = kind(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 2525),
            peerAddress=IPv4Address("TCP", peer, 40000),
        )
        proto = self.factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        client = Client(proto, transport, self)
        client.greeting = client.read()
        return client

    def add_domain(self, name: str, **fields: Any) -> Domain:
        """Add a domain to the directory (and forget cached answers)."""
        domain = self.sql.add_domain(name, str(self.root / "mail" / name), **fields)
        self.directory.invalidate()
        return domain

    def add_user(self, address: str, password: str, **fields: Any) -> User:
        """Add a user to the directory (and forget cached answers)."""
        user = self.sql.add_user(address, password, **fields)
        self.directory.invalidate()
        return user

    def edit_domain(self, name: str, **fields: Any) -> Domain:
        """Change a domain (and forget cached answers)."""
        domain = self.sql.edit_domain(name, **fields)
        self.directory.invalidate()
        return domain

    def settle(self) -> None:
        """Wait until no session waits for the spool or the directory."""
        self.clock.pump(lambda: not any(s._busy for s in self.factory.sessions))

    def stored(self) -> list[tuple[SpoolEnvelope, bytes]]:
        """Every message in the spool, oldest first: (envelope, message as received)."""
        return [
            (self.spool.load(qid), self.spool.message_bytes(self.spool.message_path(qid)))
            for qid in self.spool.pending_ids()
        ]

    def close(self) -> None:
        """Stop the threads, close the database, remove the files."""
        if self.spool.running:
            self.spool.stop()
        self.pool.stop()
        self.sql.close()
        shutil.rmtree(self.root, ignore_errors=True)


_worlds: list[World] = []


@pytest.fixture(autouse=True)
def close_worlds() -> Iterator[None]:
    """Close every World a test made (import this fixture into each test module)."""
    yield
    while _worlds:
        _worlds.pop().close()


class DaemonThreadPool(ThreadPool):
    """A thread pool whose threads never keep the test process alive."""

    def threadFactory(self, *args: Any, **kwargs: Any) -> threading.Thread:
        thread = threading.Thread(*args, **kwargs)
        thread.daemon = True
        return thread


class Client:
    """Talks to one in-process session."""

    def __init__(self, proto: SMTPServer, transport: StringTransport, world: World) -> None:
        self.proto = proto
        self.transport = transport
        self.world = world
        self.greeting = ""

    def send(self, data: bytes, settle: bool = True) -> None:
        """Deliver ``data``; by default wait until the session is no longer waiting on threads."""
        self.proto.dataReceived(data)
        if settle:
            self.world.settle()

    def read(self) -> str:
        out = self.transport.value().decode("utf-8", "replace")
        self.transport.clear()
        return out

    def replies(self) -> list[str]:
        """Complete replies read so far (multi-line replies joined with newlines)."""
        out, current = [], []
        for line in self.read().split("\r\n"):
            if not line:
                continue
            current.append(line)
            if len(line) < 4 or line[3] != "-":
                out.append("\n".join(current))
                current = []
        return out

    def cmd(self, line: str | bytes) -> str:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.read()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def login(self, user: str = "alice@example.test", password: str = "alicesecret") -> str:
        import base64

        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def send_mail(
        self,
        sender: str,
        recipients: list[str],
        body: bytes,
        helo: bool = True,
        settle: bool = True,
    ) -> list[str]:
        """MAIL, RCPT..., DATA and the body (dot-stuffing is the caller's job); all replies."""
        data = b""
        if helo:
            data += b"EHLO client.example\r\n"
        data += f"MAIL FROM:<{sender}>\r\n".encode()
        for rcpt in recipients:
            data += f"RCPT TO:<{rcpt}>\r\n".encode()
        data += b"DATA\r\n" + body + b"\r\n.\r\n"
        self.send(data, settle=settle)
        return self.replies()


def plugin_set(name: str = "testplugin", **hooks: Any) -> PluginSet:
    """A plugin set with one plugin made of the given hook functions."""
    import types

    from mailmax.core.hooks import LoadedPlugin
    from mailmax.core.hookspecs import hookimpl

    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return PluginSet([LoadedPlugin(name, module)])
