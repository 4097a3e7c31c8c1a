"""The IMAP protocol in-process (StringTransport + a pumped Clock): timeouts, shutdown, policy
hooks, TLS detection (S3, P5, P8). A real SQLDirectory on SQLite and the real store; the
directory's and the store's threads answer through the clock, which the tests pump.
"""

from __future__ import annotations

import queue
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import interfaces
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailmax.core import config, verdicts
from mailmax.core.authlimit import AuthLimiter
from mailmax.core.directory.cached import AsyncDirectory
from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.hooks import LoadedPlugin, PluginSet
from mailmax.core.hookspecs import hookimpl
from mailmax.core.imap.factory import IMAPFactory
from mailmax.core.imap.server import IMAPServer
from tests.test_imap_harness import FAST_HASHER

TLS_OPTIONS = object()


class PumpClock(Clock):
    """A Clock that also runs ``callFromThread`` work when the test pumps."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue[tuple[Any, tuple, dict]] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.from_threads.put((f, args, kwargs))

    def pump(self, until: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.advance(0)
            if until():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the directory or the store did not answer in time")
            try:
                f, args, kwargs = self.from_threads.get(timeout=0.02)
            except queue.Empty:
                continue
            f(*args, **kwargs)


@implementer(interfaces.ITLSTransport)
class TLSStringTransport(StringTransport):
    """Records STARTTLS and what was written before it."""

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
    """TLS from the first byte (an imaps port)."""

    def getPeerCertificate(self) -> None:
        return None


def plugin(name: str, **hooks: Any) -> LoadedPlugin:
    module = types.ModuleType(f"test_imap_plugin_{name}")
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return LoadedPlugin(name, module, {})


class Rig:
    """A factory on a pumped clock with example.test and alice."""

    def __init__(self, root: Path, plugins: PluginSet, imap: dict[str, Any]) -> None:
        root.mkdir(parents=True)
        self.settings = config.parse(
            {
                "server": {"hostname": "imap.example.test", "data_dir": str(root)},
                "imap": imap,
                "listeners": [{"service": "imap", "port": 143, "default_domain": "example.test"}],
            }
        )
        self.sql = SQLDirectory.open(
            f"sqlite:///{root / 'mailmax.db'}", base_dir=root, password_hasher=FAST_HASHER
        )
        self.sql.add_domain("example.test", str(root / "mail"))
        self.sql.add_user("alice@example.test", "alicesecret")
        self.clock = PumpClock()
        self.directory = AsyncDirectory(self.sql, cache_seconds=0, reactor=self.clock, threads=2)
        self.factory = IMAPFactory(
            settings=self.settings,
            listener=self.settings.listeners[0],
            directory=self.directory,
            plugins=lambda: plugins,
            tls_options=TLS_OPTIONS,  # type: ignore[arg-type]
            reactor=self.clock,
            authlimit=AuthLimiter(failure_delay=0, max_failure_delay=0, clock=self.clock.seconds),
        )

    def connect(self, kind: type[StringTransport] = TLSStringTransport) -> Session:
        """A new in-process connection (its greeting not read yet)."""
        transport = kind(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 143),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
        )
        proto = self.factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        session = Session(self, proto, transport)
        self.clock.pump(lambda: bool(transport.value()) or transport.disconnecting)
        return session

    def close(self) -> None:
        """Drop every session (their per-user counts too) and stop the threads."""
        for proto in list(self.factory.sessions):
            proto.connectionLost()
        self.factory._stop_pool()
        self.directory.stop()
        self.sql.close()


class Session:
    """One in-process connection."""

    def __init__(self, rig: Rig, proto: IMAPServer, transport: StringTransport) -> None:
        self.rig, self.proto, self.transport = rig, proto, transport

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        """Send bytes, wait until the session is idle again, return what it wrote."""
        self.proto.dataReceived(data)
        self.rig.clock.pump(lambda: not self.proto._busy)
        return self.read()

    def login(self) -> None:
        assert self.send(b"L LOGIN alice alicesecret\r\n").startswith(b"L OK")


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(plugins: PluginSet | None = None, **imap: Any) -> Rig:
        rig = Rig(tmp_path / f"rig{len(rigs)}", plugins or PluginSet([]), imap)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_login_timeout_then_session_timeout(make_rig: Callable[..., Rig]) -> None:
    """S3: 60 s to log in; then 30 minutes of silence end the session with BYE."""
    rig = make_rig(allow_plaintext_auth=True)
    early = rig.connect()
    early.read()
    rig.clock.advance(59)
    assert not early.transport.disconnecting
    rig.clock.advance(2)
    assert early.read() == b"* BYE Autologout; idle for too long\r\n"
    assert early.transport.disconnecting
    session = rig.connect()
    session.read()
    session.login()
    rig.clock.advance(1799)
    assert not session.transport.disconnecting
    assert session.send(b"n NOOP\r\n") == b"n OK NOOP completed\r\n"
    rig.clock.advance(1799)
    assert not session.transport.disconnecting
    rig.clock.advance(2)
    assert session.read() == b"* BYE Autologout; idle for too long\r\n"


def test_shutdown_says_bye_and_waits_for_the_running_command(
    make_rig: Callable[..., Rig],
) -> None:
    """S3: shutdown sends BYE to idle sessions at once, to busy ones after their command,
    and fires when every connection is gone."""
    rig = make_rig(allow_plaintext_auth=True)
    idle = rig.connect()
    busy = rig.connect()
    idle.read(), busy.read()
    busy.proto.dataReceived(b"L LOGIN alice alicesecret\r\n")
    assert busy.proto._busy
    done = rig.factory.shutdown(10)
    assert idle.read() == b"* BYE Server shutting down\r\n" and idle.transport.disconnecting
    assert busy.read() == b""
    rig.clock.pump(lambda: busy.transport.disconnecting)
    reply = busy.read()
    assert reply.startswith(b"L OK [CAPABILITY") and reply.endswith(
        b"* BYE Server shutting down\r\n"
    )
    fired: list[object] = []
    done.addCallback(fired.append)
    idle.proto.connectionLost()
    assert not fired
    busy.proto.connectionLost()
    assert fired == [None]
    late = rig.connect()
    assert late.read() == b"* BYE Server shutting down\r\n"


def test_shutdown_grace_period_is_bounded(make_rig: Callable[..., Rig]) -> None:
    """S3: a session that does not go away is closed when the grace period ends."""
    rig = make_rig(allow_plaintext_auth=True)
    session = rig.connect()
    session.read()
    session.proto._busy = True  # a command that never finishes
    done = rig.factory.shutdown(5)
    assert session.read() == b""
    rig.clock.advance(5)
    assert session.read() == b"* BYE Server shutting down\r\n"
    session.proto.connectionLost()
    assert done.called


def test_connect_policy_can_refuse(make_rig: Callable[..., Rig]) -> None:
    """P8: a mailmax_connect plugin refusing the client replaces the greeting with BYE."""
    banned = plugin("banned", mailmax_connect=lambda session: verdicts.reject("Go away"))
    rig = make_rig(PluginSet([banned]))
    session = rig.connect()
    assert session.read() == b"* BYE Go away\r\n"
    assert session.transport.disconnecting


def test_auth_policy_can_refuse(make_rig: Callable[..., Rig]) -> None:
    """P5: a mailmax_auth plugin refusing the user turns the log-in into NO."""
    seen: list[str] = []

    def refuse(session: Any, username: str) -> verdicts.Verdict:
        seen.append(username)
        return verdicts.reject("Not today")

    rig = make_rig(PluginSet([plugin("gate", mailmax_auth=refuse)]), allow_plaintext_auth=True)
    session = rig.connect()
    session.read()
    reply = session.send(b"a LOGIN alice alicesecret\r\n")
    assert reply == b"a NO [AUTHENTICATIONFAILED] Not today\r\n"
    assert seen == ["alice@example.test"]
    assert session.send(b"b SELECT INBOX\r\n") == b"b BAD Log in first\r\n"


def test_login_is_noted_for_pop_before_smtp(make_rig: Callable[..., Rig]) -> None:
    """P5: a successful IMAP log-in is remembered by client IP for POP/IMAP-before-SMTP."""
    rig = make_rig(allow_plaintext_auth=True)
    session = rig.connect()
    session.read()
    assert rig.factory.logins.recent("192.0.2.7", 60) is None
    session.login()
    assert rig.factory.logins.recent("192.0.2.7", 60) == "alice@example.test"


def test_implicit_tls_needs_no_starttls(make_rig: Callable[..., Rig]) -> None:
    """S3: on an imaps connection (ISSLTransport) log-in is offered, STARTTLS is not."""
    rig = make_rig()
    session = rig.connect(ImplicitTLSTransport)
    greeting = session.read()
    assert b"AUTH=PLAIN" in greeting and b"STARTTLS" not in greeting
    assert b"LOGINDISABLED" not in greeting
    session.login()


def test_starttls_discards_pipelined_input(make_rig: Callable[..., Rig]) -> None:
    """S3 (Twisted defect): bytes after STARTTLS in the same packet are never executed."""
    rig = make_rig()
    session = rig.connect()
    assert b"LOGINDISABLED" in session.read()
    after = session.send(b"a STARTTLS\r\nb LOGIN alice alicesecret\r\nc CAPABILITY\r\n")
    assert session.transport.before_tls == b"a OK Begin TLS negotiation now\r\n"
    assert session.transport.tls_options is TLS_OPTIONS
    assert after == b""
    assert session.proto.state == "not_auth"
    caps = session.send(b"d CAPABILITY\r\n")
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps
    assert session.send(b"e STARTTLS\r\n") == b"e BAD TLS is already active\r\n"
    session.login()
