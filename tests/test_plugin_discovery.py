"""Third-party plugins: the example package, installed for real, found through its entry point,
switched per domain and user, reloaded after its code changed; its own test suite passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailmax.testing import TestServer, start_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mailmax-example-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip into a folder of its own (not the environment)."""
    work = tmp_path_factory.mktemp("example")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (target / "mailmax_example_plugin-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


def rcpt(server: TestServer, address: str, sender: str) -> tuple[int, bytes]:
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail(sender)
        return client.rcpt(address)


def test_installed_plugin_is_found_scoped_and_reloaded(tmp_path: Path, site: Path) -> None:
    """Discovery through `mailmax.plugins`, enabling for one domain and not one of its users,
    and a reload that re-imports the installed package's changed code."""
    server = start_server(tmp_path / "server", pythonpath=[site])
    try:
        listing = server.cli("plugin", "list", "--hooks").stdout
        line = next(x for x in listing.splitlines() if x.startswith("senderguard"))
        assert "not loaded" in line and "installed package (mailmax-example-plugin 0.1.0)" in line
        assert "system, domain, user" in line
        assert "mailmax_resolve_recipient: aliases, forwarding, catchall" in listing

        with server.directory() as directory:
            directory.add_domain("other.test", str(server.data_dir / "mail" / "other.test"))
            directory.add_user("olga@other.test", "olga-password")
        result = server.cli("plugin", "enable", "senderguard", "--domain", "example.test")
        assert "loads senderguard at the next `mailmax reload`" in result.stdout
        server.cli(
            "plugin", "set", "senderguard", "blocked=spam.example", "--domain", "example.test"
        )
        server.cli("plugin", "disable", "senderguard", "--user", "bob@example.test")
        assert server.reload().returncode == 0

        code, text = rcpt(server, "alice@example.test", "x@spam.example")
        assert (code, text) == (550, b"5.7.1 Sender domain refused for <alice@example.test>")
        assert rcpt(server, "bob@example.test", "x@spam.example")[0] == 250  # user opted out
        assert rcpt(server, "olga@other.test", "x@spam.example")[0] == 250  # other domain
        shown = server.cli("plugin", "show", "senderguard", "--user", "alice@example.test").stdout
        assert "enabled (from domain example.test)" in shown
        assert 'blocked = ["spam.example"]    (domain example.test)' in shown
        assert 'message = "Sender domain refused"    (default)' in shown

        installed = site / "mailmax_example_plugin" / "__init__.py"
        installed.write_text(
            installed.read_text().replace('"Sender domain refused"', '"Go away, says v2"')
        )
        assert server.reload().returncode == 0
        assert rcpt(server, "alice@example.test", "x@spam.example")[1].endswith(
            b"Go away, says v2 for <alice@example.test>"
        )
    finally:
        server.stop()


def test_the_example_plugins_own_tests_pass(site: Path) -> None:
    """The plugin author guide's workflow: the example's suite runs against mailmax.testing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
