"""A real POP3 server for tests: POP3Factory on a real reactor in a subprocess.

The test process prepares a SQLite directory (domain ``example.test``; ``alice`` with a kept
clear-text password for APOP, ``bob`` without) and a self-signed certificate; the subprocess
(``python -m tests.pop3_support CONFIG.json``) listens for ``pop3`` and ``pop3s`` on free
loopback ports with short failed-login delays, and prints ``ready`` with its ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.store.maildir import deliver
from mailmax.core.tls import write_self_signed

DOMAIN = "example.test"
PASSWORDS = {"alice": "alice secret", "bob": "bobsecret"}
ROOT = Path(__file__).resolve().parent.parent


class POP3Process:
    """Owns the data directory, the directory database and the server subprocess."""

    def __init__(self, data_dir: Path, **options: Any) -> None:
        self.data_dir = data_dir
        self.cert = data_dir / "tls" / "cert.pem"
        self.key = data_dir / "tls" / "key.pem"
        self.db_url = f"sqlite:///{data_dir / 'mailmax.db'}"
        self.options = options
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self.log = data_dir / "pop3.log"

    def prepare(self) -> None:
        """Create the certificate, the domain and the users."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_self_signed(self.cert, self.key, ["localhost"])
        directory = SQLDirectory.open(self.db_url)
        try:
            directory.add_domain(DOMAIN, str(self.data_dir / "mail" / DOMAIN))
            for name, password in PASSWORDS.items():
                directory.add_user(f"{name}@{DOMAIN}", password, keep_clear=(name == "alice"))
        finally:
            directory.close()

    def maildir(self, name: str) -> Path:
        """A user's Maildir++ root."""
        return self.data_dir / "mail" / DOMAIN / name

    def deliver(self, name: str, *messages: bytes) -> None:
        """Deliver messages into a user's INBOX the way the queue does."""
        for i, message in enumerate(messages):
            deliver(self.maildir(name), "INBOX", message, f"{time.time_ns():x}-{i}", fsync=False)

    def start(self) -> None:
        """Start the server and wait until it listens."""
        config = self.data_dir / "pop3.json"
        config.write_text(
            json.dumps(
                {
                    "db_url": self.db_url,
                    "cert": str(self.cert),
                    "key": str(self.key),
                    "log": str(self.log),
                    **self.options,
                }
            )
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pop3_support", str(config)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"POP3 server did not start: {line!r}\n{self.output()}")
        self.ports = json.loads(line[len("ready ") :])

    def output(self) -> str:
        """The server's log so far."""
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (graceful), then make sure it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _serve(config_path: str) -> None:
    from twisted.internet import defer, endpoints, reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from mailmax.core.authlimit import AuthLimiter
    from mailmax.core.config import parse
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import build_plugin_set
    from mailmax.core.pop3 import POP3Factory
    from mailmax.core.tls import server_options

    options = json.loads(Path(config_path).read_text())
    log_file = open(options["log"], "a")  # noqa: SIM115 - open for the process's lifetime
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    settings = parse(
        {
            "server": {"hostname": "mail.example.test"},
            "pop3": {
                "allow_plaintext_auth": options.get("allow_plaintext_auth", False),
                "client_timeout": options.get("client_timeout", 30.0),
            },
            "spool": {"fsync": False},
            "listeners": [
                {"service": "pop3", "port": 0, "default_domain": DOMAIN},
                {"service": "pop3s", "port": 0, "default_domain": DOMAIN},
            ],
        }
    )
    directory = AsyncDirectory(SQLDirectory.open(options["db_url"]), reactor=reactor)
    directory.start()
    tls = server_options(Path(options["cert"]), Path(options["key"]))
    limiter = AuthLimiter(
        failure_delay=options.get("failure_delay", 0.05),
        max_failure_delay=options.get("max_failure_delay", 0.2),
        block_after=options.get("block_after", 50),
        ip_block_after=options.get("ip_block_after", 50),
        block_seconds=options.get("block_seconds", 60.0),
    )
    plugin_set = build_plugin_set([], {})
    factories = []

    async def start() -> None:
        ports = {}
        for listener in settings.listeners:
            factory = POP3Factory(
                settings=settings,
                listener=listener,
                directory=directory,
                plugins=lambda: plugin_set,
                tls_options=tls,
                reactor=reactor,
                authlimit=limiter,
            )
            if listener.service == "pop3s":
                endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, tls, interface="127.0.0.1")
            else:
                endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
            port = await endpoint.listen(factory)
            factories.append(factory)
            ports[listener.service] = port.getHost().port
        print("ready " + json.dumps(ports), flush=True)

    def on_term(signum: int, frame: Any) -> None:
        async def stop() -> None:
            await defer.gatherResults([f.shutdown(2.0) for f in factories])
            directory.stop()
            reactor.stop()

        reactor.callFromThread(lambda: defer.ensureDeferred(stop()))

    signal.signal(signal.SIGTERM, on_term)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    _serve(sys.argv[1])
