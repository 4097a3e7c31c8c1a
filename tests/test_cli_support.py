"""Helpers for the CLI tests: a real system made by ``mailmax init`` in a temporary folder.

(No tests here; the module name keeps it beside the CLI tests it serves.)
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from mailmax.core.cli.main import cli

DOMAIN = "example.test"


@dataclass
class System:
    """A MailMax system made by ``mailmax init`` for a test."""

    data_dir: Path
    passwords: dict[str, str]

    @property
    def config(self) -> Path:
        """The config file."""
        return self.data_dir / "mailmax.toml"

    def mail_dir(self, domain: str = DOMAIN) -> Path:
        """Where a domain's mail lives by default."""
        return self.data_dir / "mail" / domain

    def cli(self, *args: str, input: str | None = None) -> Result:
        """Run ``mailmax --config CONFIG ARGS`` in-process."""
        return CliRunner().invoke(cli, ["--config", str(self.config), *args], input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run a command that must succeed; return its stdout."""
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
        return result.stdout

    def json(self, *args: str, input: str | None = None) -> Any:
        """Run a command with --json that must succeed; return the parsed output."""
        return json.loads(self.ok("--json", *args, input=input))

    def changed(self, *args: str, input: str | None = None) -> Any:
        """Run a changing command with --json; check the shape every such command prints
        (``ok``, ``changed``, ``message``, ``object``) and return its object."""
        result = self.json(*args, input=input)
        assert set(result) == {"ok", "changed", "message", "object"}, result
        assert result["ok"] is True and isinstance(result["message"], str)
        return result["object"]

    def fails(self, *args: str, code: int = 1, input: str | None = None) -> str:
        """Run a command that must fail with ``code``; return its stderr."""
        result = self.cli(*args, input=input)
        assert result.exit_code == code, (result.exit_code, result.output)
        assert "Traceback" not in result.output
        return result.stderr

    def directory(self):
        """The system's directory, opened directly (close it after use)."""
        from mailmax.core.config import load
        from mailmax.core.directory.sql import SQLDirectory

        settings = load(self.config)
        return SQLDirectory.open(settings.database_url, base_dir=settings.data_dir)


def _init(data_dir: Path, *extra: str) -> System:
    result = CliRunner().invoke(
        cli,
        ["init", "--data-dir", str(data_dir), "--domain", DOMAIN, "--non-interactive", "--json",
         *extra],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)["object"]
    passwords = {u["address"]: u["password"] for u in report["users"]}
    return System(data_dir, passwords)


_template: System | None = None


def make_system(tmp_path: Path, *extra: str) -> System:
    """A system as ``mailmax init --non-interactive`` makes it, in ``tmp_path/data``.

    Without ``extra`` options the system is a copy of one made once per test run (hashing the
    three passwords is the slow part of init), moved to its new place by rewriting the paths in
    the config file and the domain's mail directory with ``mailmax domain edit``.
    """
    global _template
    data_dir = tmp_path / "data"
    if extra:
        return _init(data_dir, *extra)
    if _template is None:
        holder = Path(tempfile.mkdtemp(prefix="mailmax-cli-template-"))
        atexit.register(shutil.rmtree, holder, True)
        _template = _init(holder / "data")
    shutil.copytree(_template.data_dir, data_dir)
    config = data_dir / "mailmax.toml"
    config.write_text(config.read_text().replace(str(_template.data_dir), str(data_dir)))
    system = System(data_dir, dict(_template.passwords))
    system.ok("domain", "edit", DOMAIN, "--mail-dir", str(system.mail_dir()))
    return system


def run_mailmax(
    *args: str, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mailmax`` console script."""
    env = dict(os.environ)
    env.pop("MAILMAX_CONFIG", None)
    return subprocess.run(
        ["mailmax", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def assert_archive_name(name: str, original: str) -> None:
    """A10: the archive is named ORIGINAL.deleted-YYYYMMDD-HHMMSS with today's (UTC) date."""
    match = re.fullmatch(rf"{re.escape(original)}\.deleted-(\d{{8}}-\d{{6}})", name)
    assert match, name
    stamp = datetime.datetime.strptime(match[1], "%Y%m%d-%H%M%S").replace(tzinfo=datetime.UTC)
    assert abs(datetime.datetime.now(datetime.UTC) - stamp) < datetime.timedelta(minutes=5)
