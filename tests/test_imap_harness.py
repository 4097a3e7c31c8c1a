"""A real IMAP server for tests: IMAPFactory in its own reactor in a subprocess; no tests here.

``python -m tests.test_imap_harness CONFIG.json`` runs the server: a real SQLDirectory on
SQLite and the real mailbox store in a pytest temporary directory, with a STARTTLS and an
implicit-TLS listener per profile on free ports (printed as one JSON line). One server process
serves the whole test run; test modules get it through :func:`world` as the ``plain`` profile
(plaintext log-in allowed, fast IDLE polling) or the ``strict`` one (TLS required, short
timeouts). Each test makes its own user with :meth:`IMAPWorld.new_user`, so tests never see
each other's mail.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.store import maildir
from mailmax.core.tls import write_self_signed

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "example.test"
#: Real argon2id with cheap parameters (the server uses the same, so no rehash at log-in).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
#: Largest message the test servers accept (APPENDLIMIT).
MAX_MESSAGE = 1_000_000
_counter = itertools.count(1)


# ---------------------------------------------------------------------- the server process
def serve(config_path: str) -> None:
    """Run IMAP listeners until SIGTERM (then ``shutdown`` with a grace period)."""
    import dataclasses

    from twisted.internet import defer, endpoints, reactor

    from mailmax.core import config as config_mod
    from mailmax.core.authlimit import AuthLimiter
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet
    from mailmax.core.imap.factory import IMAPFactory
    from mailmax.core.tls import server_options

    spec = json.loads(Path(config_path).read_text())
    sql = SQLDirectory.open(spec["db"], base_dir=spec["data_dir"], password_hasher=FAST_HASHER)
    directory = AsyncDirectory(sql, cache_seconds=0, reactor=reactor)
    directory.start()
    tls = server_options(Path(spec["cert"]), Path(spec["key"]))
    plugins = PluginSet([])
    authlimit = AuthLimiter(**spec["auth"])
    factories: list[IMAPFactory] = []

    async def start() -> None:
        ports: dict[str, dict[str, int]] = {}
        for label, profile in spec["profiles"].items():
            settings = config_mod.parse(profile["settings"])
            ports[label] = {}
            for listener in settings.listeners:
                factory = IMAPFactory(
                    settings=settings,
                    listener=listener,
                    directory=directory,
                    plugins=lambda: plugins,
                    tls_options=tls,
                    reactor=reactor,
                    authlimit=authlimit,
                )
                factory.limits = dataclasses.replace(factory.limits, **profile["limits"])
                if listener.service == "imaps":
                    endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, tls, interface="127.0.0.1")
                else:
                    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
                port = await endpoint.listen(factory)
                factories.append(factory)
                ports[label][listener.service] = port.getHost().port
        print(json.dumps(ports), flush=True)

    def stopping() -> defer.Deferred[Any]:
        return defer.gatherResults([f.shutdown(5.0) for f in factories])

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(_fatal, reactor))
    reactor.run()
    sql.close()


def _fatal(failure: Any, reactor: Any) -> None:
    print(json.dumps({"error": str(failure.value)}), flush=True)
    reactor.stop()


# ---------------------------------------------------------------------- the test side
@dataclass
class MailUser:
    """A mailbox owner made for one test."""

    address: str
    password: str
    name: str
    maildir: Path


#: Server configurations run side by side in the one test server process.
PROFILES: dict[str, dict[str, Any]] = {
    # plaintext log-in allowed (most tests), fast IDLE polling
    "plain": {
        "imap": {
            "allow_plaintext_auth": True,
            "idle_poll_seconds": 0.2,
            "max_sessions_per_user": 5,
        },
        "limits": {},
    },
    # TLS required, short timeouts (below what the configuration allows)
    "strict": {
        "imap": {"allow_plaintext_auth": False, "login_timeout": 1.5},
        "limits": {"idle_timeout": 3.0},
    },
}


class IMAPServerProcess:
    """The server subprocess with one STARTTLS and one implicit-TLS port per profile."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="mailmax-imap-"))
        self._owns_root = root is None
        self.cert = self.root / "tls" / "cert.pem"
        self.key = self.root / "tls" / "key.pem"
        write_self_signed(self.cert, self.key, ["localhost"])
        self.db_url = f"sqlite:///{self.root / 'mailmax.db'}"
        self.sql = SQLDirectory.open(self.db_url, base_dir=self.root, password_hasher=FAST_HASHER)
        self.sql.add_domain(DOMAIN, str(self.root / "mail" / DOMAIN))
        profiles = {
            label: {
                "settings": {
                    "server": {"hostname": "imap.example.test", "data_dir": str(self.root)},
                    "smtp": {"max_message_size": MAX_MESSAGE},
                    "imap": profile["imap"],
                    "listeners": [
                        {"service": "imap", "port": 0, "default_domain": DOMAIN},
                        {"service": "imaps", "port": 0, "default_domain": DOMAIN},
                    ],
                },
                "limits": profile["limits"],
            }
            for label, profile in PROFILES.items()
        }
        spec = {
            "profiles": profiles,
            "db": self.db_url,
            "data_dir": str(self.root),
            "cert": str(self.cert),
            "key": str(self.key),
            "auth": {"failure_delay": 0.05, "max_failure_delay": 0.1, "block_after": 1000},
        }
        config = self.root / "harness.json"
        config.write_text(json.dumps(spec))
        self.log = open(self.root / "server.log", "w+b")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_imap_harness", str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"IMAP test server did not start: {self.server_log()}")
        self.ports = json.loads(line)
        if "error" in self.ports:
            self.stop()
            raise RuntimeError(f"IMAP test server failed: {self.ports['error']}")

    def server_log(self) -> str:
        """What the server wrote to stderr so far."""
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then kill) and remove its files."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.sql.close()
        self.log.close()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


class IMAPWorld:
    """One profile of the running test server, and helpers to talk to it."""

    def __init__(self, process: IMAPServerProcess, label: str) -> None:
        self.process = process
        self.label = label
        self.root = process.root
        self.cert = process.cert
        self.sql = process.sql
        self.port = process.ports[label]["imap"]
        self.tls_port = process.ports[label]["imaps"]

    def server_log(self) -> str:
        """What the server wrote to stderr so far."""
        return self.process.server_log()

    # ------------------------------------------------------------------ users and mail
    def new_user(self, **fields: Any) -> MailUser:
        """A fresh user of example.test with an empty mailbox."""
        name = f"u{os.getpid()}x{next(_counter)}"
        password = secrets.token_hex(8)
        self.sql.add_user(f"{name}@{DOMAIN}", password, **fields)
        return MailUser(f"{name}@{DOMAIN}", password, name, self.root / "mail" / DOMAIN / name)

    def deliver(self, user: MailUser, message: bytes, folder: str = "INBOX") -> Path:
        """Deliver like the queue runner does (Maildir ``new/``), from outside the server."""
        micros = time.time_ns() // 1000
        unique = f"{micros:014x}{secrets.token_hex(2)}-0"
        legacy = folder.replace("/", ".")
        return maildir.deliver(user.maildir, legacy, message, unique, fsync=False)

    # ------------------------------------------------------------------ clients
    def client(self, user: MailUser | None = None, *, tls: bool = False) -> imaplib.IMAP4:
        """An imaplib client (implicit TLS with ``tls``), logged in as ``user`` if given."""
        if tls:
            context = ssl.create_default_context(cafile=str(self.cert))
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                "localhost", self.tls_port, ssl_context=context, timeout=10
            )
        else:
            client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        if user is not None:
            client.login(user.address, user.password)
        return client

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the server's certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def raw(self) -> RawClient:
        """A byte-level client on the STARTTLS port, greeting already read."""
        return RawClient(socket.create_connection(("127.0.0.1", self.port), timeout=10))


class RawClient:
    """Sends exact bytes and reads replies line by line (literals included)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        """Write bytes as they are."""
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed the connection; unread: {self.buffer!r}")
        self.buffer += chunk

    def line(self) -> bytes:
        """One line without CRLF."""
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes."""
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the tagged one; literal contents inlined."""
        lines = []
        while True:
            line = self.line()
            while line.endswith(b"}") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -1])
                line += b"\r\n" + self.exact(size) + self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send ``tag text`` and read the whole response."""
        self.send(tag + b" " + text + b"\r\n")
        return self.response(tag)

    def login(self, user: MailUser) -> None:
        """LOGIN as ``user``."""
        reply = self.command(
            b"L", b'LOGIN "%s" "%s"' % (user.address.encode(), user.password.encode())
        )
        assert reply[-1].startswith(b"L OK"), reply

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (input discarded)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    def close(self) -> None:
        """Drop the connection."""
        with contextlib.suppress(OSError):
            self.sock.close()


_process: list[IMAPServerProcess] = []


def world(request: pytest.FixtureRequest, label: str = "plain") -> IMAPWorld:
    """The test server (started on first use, stopped at the end of the run) as ``label``.

    ``plain`` allows plaintext log-in and polls every 0.2 s during IDLE; ``strict`` needs TLS
    for log-in and has short timeouts. Test modules wrap this in their own fixtures.
    """
    if not _process or _process[0].proc.poll() is not None:
        root = request.getfixturevalue("tmp_path_factory").mktemp("imap-server")
        _process[:] = [IMAPServerProcess(root)]
        request.session.addfinalizer(_process[0].stop)
    return IMAPWorld(_process[0], label)


def message(
    subject: str = "Hello",
    body: str = "Hi there.\r\n",
    sender: str = "alice@example.org",
    **extra: str,
) -> bytes:
    """A small RFC 5322 message with CRLF line ends."""
    headers = {
        "From": sender,
        "To": "bob@example.test",
        "Subject": subject,
        "Date": "Mon, 01 Jan 2024 10:00:00 +0000",
        "Message-ID": f"<{secrets.token_hex(6)}@example.org>",
        **{k.replace("_", "-"): v for k, v in extra.items()},
    }
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n" + body).encode("utf-8")


if __name__ == "__main__":
    serve(sys.argv[1])
