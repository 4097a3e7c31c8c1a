"""A real ``twistd mailmax`` for tests: :class:`TestServer`, :func:`start_server` and the
``mailmax_server`` pytest fixture. Import them from :mod:`mailmax.testing` (see its
documentation).

The server has the domain :data:`DOMAIN` with the users of :data:`USERS` (name: password).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mailmax.core.pluginhost.configedit import toml_key, toml_value
from mailmax.core.store import maildir

DOMAIN = "example.test"
USERS = {"alice": "alicesecret", "bob": "bobsecret", "postmaster": "postmastersecret"}


def _toml(sections: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for name, table in sections.items():
        if name == "listeners":
            for listener in table:
                lines.append("[[listeners]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in listener.items()]
            continue
        lines.append(f"[{name}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class TestServer:
    """A ``twistd mailmax`` process on 127.0.0.1 and what a test needs to talk to it."""

    __test__ = False  # not a test class

    def __init__(self, data_dir: Path, sections: dict[str, Any], pythonpath: Sequence[str]):
        self.data_dir = data_dir
        self.config_path = data_dir / "mailmax.toml"
        self.sections = sections
        self.pythonpath = [str(p) for p in pythonpath]
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    @property
    def database_url(self) -> str:
        """The directory's URL: ``[server] database_url`` if set, else ``<data>/mailmax.db``."""
        url = self.sections.get("server", {}).get("database_url")
        return url or f"sqlite:///{self.data_dir / 'mailmax.db'}"

    def write_config(self) -> None:
        """Write ``sections`` as the config file."""
        self.config_path.write_text(_toml(self.sections))

    def prepare(self) -> None:
        """Write the config and create the domain and users."""
        from mailmax.core.directory.sql import SQLDirectory

        self.write_config()
        with SQLDirectory.open(self.database_url) as directory:
            directory.add_domain(DOMAIN, str(self.data_dir / "mail" / DOMAIN))
            for name, password in USERS.items():
                directory.add_user(f"{name}@{DOMAIN}", password)

    def directory(self) -> Any:
        """The server's directory (a SQLDirectory; close it after use)."""
        from mailmax.core.directory.sql import SQLDirectory

        return SQLDirectory.open(self.database_url)

    def _env(self) -> dict[str, str]:
        paths = [*self.pythonpath, os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it listens."""
        ports_file = self.data_dir / "run" / "ports.json"
        ports_file.unlink(missing_ok=True)
        twistd = shutil.which("twistd") or os.path.join(os.path.dirname(sys.executable), "twistd")
        with (self.data_dir / "twistd.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [twistd, "-n", "--pidfile=", "mailmax", "--config", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MailMax exited with {self.proc.returncode}:\n{self.output()}")
            if ports_file.exists():
                self.ports = {i["service"]: i["port"] for i in json.loads(ports_file.read_text())}
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"MailMax did not start within {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        """What twistd printed."""
        path = self.data_dir / "twistd.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_text(self) -> str:
        """The server's log file."""
        path = self.data_dir / "mailmax.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def smtp(self, timeout: float = 10) -> smtplib.SMTP:
        """An smtplib client connected to the smtp listener."""
        return smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=timeout)

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``mailmax --config <this server's config> ARGS`` (``input`` on its stdin)."""
        exe = shutil.which("mailmax") or os.path.join(os.path.dirname(sys.executable), "mailmax")
        result = subprocess.run(
            [exe, "--config", str(self.config_path), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"mailmax {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def reload(self) -> subprocess.CompletedProcess[str]:
        """``mailmax reload`` (not checked: look at ``returncode``)."""
        return self.cli("reload", check=False)

    def maildir(self, address: str, folder: str = "INBOX") -> Path:
        """The Maildir folder of a local address."""
        return maildir_folder(self.data_dir / "mail", address, folder)

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """The messages stored for ``address``, oldest first."""
        return folder_messages(self.maildir(address, folder))

    def wait_for_mail(self, address: str, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Wait until ``address`` has ``count`` messages; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(address)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{address} has {len(found)} messages, expected {count}\n"
                    + self.output()[-3000:]
                )
            time.sleep(0.05)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is true; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            time.sleep(0.05)


def maildir_folder(mail_root: Path, address: str, folder: str = "INBOX") -> Path:
    """The Maildir folder of ``address`` when mailboxes live in ``mail_root/DOMAIN/USER``."""
    local, domain = address.split("@")
    return maildir.folder_path(mail_root / domain / local, folder)


def folder_messages(box: Path) -> list[bytes]:
    """The messages of the Maildir folder ``box`` (new and cur), oldest first."""
    files = [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()]
    return [p.read_bytes() for p in sorted(files, key=lambda p: (p.stat().st_mtime, p.name))]


def start_server(
    data_dir: Path,
    *,
    plugins: Sequence[str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    sections: Mapping[str, Any] | None = None,
    pythonpath: Sequence[str | Path] = (),
    plugin_files: Mapping[str, str] | None = None,
) -> TestServer:
    """Start a real server in ``data_dir`` (see the module documentation).

    ``plugins`` is ``[plugins] enabled`` (None: the built-in default list), ``settings`` the
    ``[plugins.settings.NAME]`` tables, ``plugin_files`` files to put in the plugins directory
    (``{"name.py": source}``), ``pythonpath`` extra import paths for the server process.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    folder = data_dir / "plugins"
    for file_name, source in (plugin_files or {}).items():
        (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_text(source)
    plugin_table: dict[str, Any] = {}
    if plugins is not None:
        plugin_table["enabled"] = list(plugins)
    full: dict[str, Any] = {
        "server": {
            "hostname": "mail.example.test",
            "shutdown_grace_seconds": 5.0,
            "directory_cache_seconds": 0.2,
        },
        "listeners": [
            {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN}
        ],
        "queue": {"scan_interval": 1.0, "retry_minutes": 0.02},
        "plugins": plugin_table,
    }
    full = merge_sections(full, sections or {})
    for name, table in (settings or {}).items():
        full[f"plugins.settings.{toml_key(name)}"] = dict(table)
    server = TestServer(data_dir, full, list(pythonpath))
    server.prepare()
    server.start()
    return server


def merge_sections(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it: a table merges key by key into the table of
    the same name, anything else (``listeners``, a new table) replaces."""
    merged = dict(base)
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def stop_all(servers: Iterable[TestServer]) -> None:
    """Stop every server; one that does not stop in time is killed."""
    for server in servers:
        try:
            server.stop(timeout=15)
        except Exception:
            server.kill()


def _fixture() -> Any:
    import pytest

    @pytest.fixture
    def mailmax_server(tmp_path: Path) -> Iterator[Callable[..., TestServer]]:
        """Start real MailMax servers: ``mailmax_server(plugins=[...], settings={...})``."""
        started: list[TestServer] = []

        def start(**kwargs: Any) -> TestServer:
            server = start_server(tmp_path / f"server{len(started)}", **kwargs)
            started.append(server)
            return server

        yield start
        stop_all(started)

    return mailmax_server


try:  # a pytest plugin when pytest is there: pytest_plugins = ["mailmax.testing"]
    mailmax_server = _fixture()
except ImportError:  # pragma: no cover - pytest is only needed to use the fixture
    mailmax_server = types.SimpleNamespace()
