"""Helpers for driving the SMTP protocol in-process (StringTransport + Clock); no tests here."""

from __future__ import annotations

import queue
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, interfaces
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailmax.core import config
from mailmax.core.directory.api import Domain, Lookup, RecipientLookup, User
from mailmax.core.hooks import PluginSet
from mailmax.core.smtp.server import SMTPFactory, SMTPServer
from mailmax.core.spool import Spool, SpoolEnvelope


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


class MemoryDirectory:
    """A stand-in for AsyncDirectory answering from dicts."""

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.users: dict[str, tuple[User, str]] = {}
        self.logins: list[tuple[str, str, str]] = []

    def add_domain(self, name: str, **fields: Any) -> Domain:
        self.domains[name] = Domain(name=name, mail_dir=f"/tmp/{name}", **fields)
        return self.domains[name]

    def add_user(self, address: str, password: str, **fields: Any) -> User:
        name, domain = address.split("@")
        user = User(name=name, domain=domain, **fields)
        self.users[address] = (user, password)
        return user

    def lookup_recipient(self, address: str) -> defer.Deferred[RecipientLookup]:
        local, _, domain_name = address.rpartition("@")
        domain = self.domains.get(domain_name.lower())
        if domain is None:
            return defer.succeed(RecipientLookup(Lookup.NOT_LOCAL, address))
        found = self.users.get(f"{local.lower()}@{domain.name}")
        if found is None:
            if domain.catch_all:
                user = self.users[f"{domain.catch_all}@{domain.name}"][0]
                return defer.succeed(RecipientLookup(Lookup.CATCH_ALL, address, domain, user))
            return defer.succeed(RecipientLookup(Lookup.UNKNOWN_USER, address, domain))
        user = found[0]
        status = Lookup.USER if user.enabled else Lookup.DISABLED
        return defer.succeed(RecipientLookup(status, address, domain, user))

    def _find(self, login: str, default_domain: str) -> tuple[User, str] | None:
        if "@" not in login:
            login = f"{login}@{default_domain}"
        return self.users.get(login.lower())

    def authenticate(self, login: str, password: str, default_domain: str = "") -> Any:
        found = self._find(login, default_domain)
        return defer.succeed(found[0] if found and found[1] == password else None)

    def clear_password(self, login: str, default_domain: str = "") -> Any:
        return defer.succeed(self._find(login, default_domain))

    def is_local_domain(self, name: str) -> Any:
        return defer.succeed(name.lower() in self.domains)

    def record_login(self, address: str, service: str, ip: str) -> Any:
        self.logins.append((address, service, ip))
        return defer.succeed(None)


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
        self.directory = MemoryDirectory()
        self.directory.add_domain("example.test")
        self.directory.add_user("alice@example.test", "alicesecret")
        self.directory.add_user("bob@example.test", "bobsecret")
        self.spool = Spool(self.root / "queue", fsync=False, threads=2, reactor=self.clock)
        self.spool.start()
        weakref.finalize(self, _cleanup, self.spool, self.root)
        self.factory = SMTPFactory(
            settings=self.settings,
            listener=self.settings.listeners[0],
            directory=self.directory,  # type: ignore[arg-type]
            spool=self.spool,  # type: ignore[arg-type]
            plugins=lambda: self.plugins,
            tls_options=object() if self.tls else None,  # type: ignore[arg-type]
            reactor=self.clock,
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

    def settle(self) -> None:
        """Wait until no session waits for the spool or the directory."""
        self.clock.pump(lambda: not any(s._busy for s in self.factory.sessions))

    def stored(self) -> list[tuple[SpoolEnvelope, bytes]]:
        """Every message in the spool, oldest first: (envelope, raw message)."""
        return [
            (self.spool.load(qid), self.spool.message_path(qid).read_bytes())
            for qid in self.spool.pending_ids()
        ]


def _cleanup(spool: Spool, root: Path) -> None:
    if spool.running:
        spool.stop()
    shutil.rmtree(root, ignore_errors=True)


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
