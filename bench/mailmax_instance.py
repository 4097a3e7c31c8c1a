"""MailMax set up as an administrator would, serving given Maildirs over IMAP and POP3.

``mailmax init`` makes the data directory (config, database, certificate); the benchmark's own
config file, ``mailmax-bench.toml``, is that config with the listeners replaced by smtp, pop3
and imap on free loopback ports and plaintext log-in allowed (loopback only). Users are added
with ``mailmax user add``; their Maildirs are moved into the domain's mail directory before the
first start. ``twistd -n mailmax`` runs in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from instance import ProcessGroup
from netutil import LOOPBACK, free_port, require_loopback
from servers import tool

from mailmax.core.pluginhost.configedit import toml_value

DOMAIN = "example.test"


def write_toml(path: Path, sections: dict[str, Any]) -> None:
    """Write tables of scalars and lists (``listeners`` is an array of tables)."""
    lines: list[str] = []
    for name, table in sections.items():
        for entry in table if isinstance(table, list) else [table]:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    tomllib.loads(path.read_text())  # never start from a broken file


def _greets(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
            return sock.recv(512).startswith(prefix)
    except OSError:
        return False


class MailMaxInstance:
    """One MailMax data directory and, while started, its twistd process group."""

    def __init__(self, base: Path, host: str = LOOPBACK) -> None:
        self.base = Path(base)
        self.host = require_loopback(host)
        self.data = self.base / "data"
        self.config = self.data / "mailmax-bench.toml"
        ports: set[int] = set()
        while len(ports) < 6:  # the admin API's too: other servers may hold the default
            ports.add(free_port(host))
        self.port_smtp, self.port_pop3, self.port_imap, *self._init_ports = sorted(ports)
        self.group: ProcessGroup | None = None

    def _cli(self, *args: str, config: Path | None = None, stdin: str | None = None) -> str:
        mailmax = tool("mailmax")
        if mailmax is None:
            raise RuntimeError("the mailmax command is not installed (pip install -e .)")
        argv = [mailmax, *(["--config", str(config)] if config else []), *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr}{result.stdout}")
        return result.stdout

    def prepare(self, users: dict[str, tuple[str, Path]]) -> None:
        """init, the bench config, the users and their Maildirs."""
        self.base.mkdir(parents=True, exist_ok=True)
        smtp, submission, smtps, admin = self.port_smtp, *self._init_ports
        self._cli(
            "init",
            "--data-dir",
            str(self.data),
            "--domain",
            DOMAIN,
            "--non-interactive",
            "--address",
            self.host,
            "--smtp-port",
            str(smtp),
            "--submission-port",
            str(submission),
            "--smtps-port",
            str(smtps),
            "--admin-port",
            str(admin),
        )
        sections = tomllib.loads((self.data / "mailmax.toml").read_text())
        listener = {"address": self.host, "default_domain": DOMAIN}
        sections["listeners"] = [
            {"service": "smtp", "port": self.port_smtp, **listener},
            {"service": "pop3", "port": self.port_pop3, **listener},
            {"service": "imap", "port": self.port_imap, **listener},
        ]
        sections["pop3"] = {**sections.get("pop3", {}), "allow_plaintext_auth": True}
        sections["imap"] = {**sections.get("imap", {}), "allow_plaintext_auth": True}
        write_toml(self.config, sections)
        for name, (password, maildir) in users.items():
            address = f"{name}@{DOMAIN}"
            self._cli(
                "user",
                "add",
                address,
                "--password-stdin",
                config=self.config,
                stdin=password + "\n",
            )
            target = self.data / "mail" / DOMAIN / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(maildir, target)

    def drop_index(self, name: str) -> None:
        """Remove the INBOX index of user ``name`` (no session may have it open)."""
        for suffix in ("", "-wal", "-shm"):
            (self.data / "mail" / DOMAIN / name / f"mailmax.index{suffix}").unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start twistd and wait until POP3 and IMAP greet."""
        twistd = tool("twistd")
        if twistd is None:
            raise RuntimeError("twistd is not installed")
        argv = [twistd, "-n", "--pidfile=", "mailmax", "--config", str(self.config)]
        self.group = ProcessGroup(argv, self.data, self.base / "twistd.out")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.group.alive():
                tail = self.group.tail()
                self.group = None
                raise RuntimeError(f"MailMax exited before it greeted:\n{tail}")
            if _greets(self.port_imap, b"* OK") and _greets(self.port_pop3, b"+OK"):
                return
            time.sleep(0.05)
        tail = self.group.tail()
        self.stop()
        raise TimeoutError(f"MailMax did not greet within {timeout:.0f} s:\n{tail}")

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL)."""
        group, self.group = self.group, None
        if group is not None:
            group.stop()

    def restart(self) -> None:
        """A new process; the indexes stay."""
        self.stop()
        self.start()

    def session_id(self) -> int | None:
        """The process group's session (twistd is its leader)."""
        group = self.group
        return group.proc.pid if group is not None and group.alive() else None

    def version(self) -> str:
        """MailMax's version and the commit of the working tree."""
        try:
            from mailmax import __version__
        except ImportError:
            __version__ = "?"
        commit = "?"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            commit = subprocess.run(
                ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        return f"MailMax {__version__} ({commit}), twistd, Maildir + SQLite index"
