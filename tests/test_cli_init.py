"""``mailmax init``: the basic system wizard (S8), run as the installed command."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import stat
import subprocess
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from mailmax.core.cli.main import cli
from mailmax.core.config import load
from mailmax.core.directory.api import DomainType
from mailmax.core.directory.sql import SQLDirectory
from tests.fixtures.ports import free_port, wait_until
from tests.test_cli_support import make_system, run_mailmax

FIRST = ("postmaster", "admin", "root")


def _generated(stdout: str) -> dict[str, str]:
    """The ``address password`` lines of the generated-passwords block."""
    lines = stdout.split("Generated passwords", 1)[1].split("Next steps", 1)[0].splitlines()
    return dict(line.split() for line in lines[1:] if line.strip())


def test_init_creates_a_working_system(tmp_path):
    """S8: config, database, domain, mail and queue directories, three users, a certificate."""
    data = tmp_path / "data"
    out = run_mailmax(
        "init", "--data-dir", str(data), "--domain", "Example.COM", "--hostname",
        "mx.example.com", "--admin-password", "given admin secret", "--non-interactive",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    config = data / "mailmax.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert text.startswith("# MailMax configuration")
    settings = load(config)
    assert settings.server.hostname == "mx.example.com"
    assert [(li.service, li.address, li.port, li.default_domain) for li in settings.listeners] == [
        ("smtp", "127.0.0.1", 2525, "example.com"),
        ("submission", "127.0.0.1", 5587, "example.com"),
        ("smtps", "127.0.0.1", 4465, "example.com"),
        ("pop3", "127.0.0.1", 1110, "example.com"),
        ("pop3s", "127.0.0.1", 1995, "example.com"),
        ("imap", "127.0.0.1", 1143, "example.com"),
        ("imaps", "127.0.0.1", 1993, "example.com"),
    ]
    assert settings.path(settings.tls.cert) == data / "tls" / "cert.pem"
    assert settings.path(settings.tls.key) == data / "tls" / "key.pem"
    assert settings.spool_dir == data / "queue" and settings.spool_dir.is_dir()
    for name in ("bans", "sendercheck", "limits"):  # P11, A2: on for a new system
        assert name in settings.plugins.enabled
    assert (data / "mail" / "example.com").is_dir()
    assert stat.S_IMODE((data / "tls" / "key.pem").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((data / "tls" / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"mx.example.com", "localhost"} <= set(names.get_values_for_type(x509.DNSName))

    # the passwords not given were generated and printed once; the given one never
    generated = _generated(out.stdout)
    assert set(generated) == {"postmaster@example.com", "root@example.com"}
    for password in generated.values():
        assert len(password) >= 16 and out.stdout.count(password) == 1
    assert "given admin secret" not in out.stdout + out.stderr
    assert f"twistd -n --pidfile= mailmax --data-dir {config.parent}" in out.stdout
    assert "smtplib" in out.stdout and "swaks" in out.stdout

    directory = SQLDirectory.open(settings.database_url, base_dir=settings.data_dir)
    try:
        (domain,) = directory.list_domains()
        assert (domain.name, domain.type) == ("example.com", DomainType.NORMAL)
        assert settings.path(domain.mail_dir) == data / "mail" / "example.com"
        users = {u.address for u in directory.list_users()}
        assert users == {f"{u}@example.com" for u in FIRST}
        for address, password in generated.items():
            assert directory.authenticate(address, password) is not None
        assert directory.authenticate("admin@example.com", "given admin secret") is not None
    finally:
        directory.close()

    check = run_mailmax("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == f"OK: {config}"


def test_init_refuses_an_existing_system_and_force_redoes_it(tmp_path):
    """S8: a second init changes nothing without --force; --force keeps the old files aside."""
    data = tmp_path / "data"
    first = run_mailmax("init", "--data-dir", str(data), "--domain", "example.test",
                        "--non-interactive")  # fmt: skip
    assert first.returncode == 0, first.stderr
    old_password = _generated(first.stdout)["postmaster@example.test"]
    config_before = (data / "mailmax.toml").read_bytes()
    db_before = (data / "mailmax.db").read_bytes()

    again = run_mailmax("init", "--data-dir", str(data), "--domain", "other.test",
                        "--non-interactive")  # fmt: skip
    assert again.returncode == 1
    assert again.stdout == ""
    assert "already holds a MailMax system" in again.stderr
    assert "--force" in again.stderr and "nothing was changed" in again.stderr
    assert (data / "mailmax.toml").read_bytes() == config_before
    assert (data / "mailmax.db").read_bytes() == db_before
    assert not (data / "mail" / "other.test").exists()

    forced = run_mailmax("init", "--data-dir", str(data), "--domain", "other.test",
                         "--non-interactive", "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    backups = sorted(p.name.split(".bak-")[0] for p in data.glob("*.bak-*"))
    assert "mailmax.toml" in backups and "mailmax.db" in backups
    assert "existing files kept" in forced.stdout  # the certificate was reused
    settings = load(data / "mailmax.toml")
    assert settings.listeners[0].default_domain == "other.test"
    directory = SQLDirectory.open(settings.database_url)
    try:
        assert [d.name for d in directory.list_domains()] == ["other.test"]
        new_password = _generated(forced.stdout)["postmaster@other.test"]
        assert new_password != old_password
        assert directory.authenticate("postmaster@other.test", new_password) is not None
    finally:
        directory.close()


def test_a_failed_forced_init_puts_the_old_system_back(tmp_path):
    """S8: when --force fails part-way, the old config and database are back in place."""
    system = make_system(tmp_path)
    before = {p.name: p.read_bytes() for p in system.data_dir.iterdir() if p.is_file()}
    (system.data_dir / "mail" / "blocked.test").write_text("a file where a folder must go")
    result = CliRunner().invoke(
        cli,
        ["init", "--data-dir", str(system.data_dir), "--domain", "blocked.test", "--force",
         "--non-interactive"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "blocked.test" in result.stderr
    after = {p.name: p.read_bytes() for p in system.data_dir.iterdir() if p.is_file()}
    assert after == before
    assert system.ok("config", "check").startswith("OK: ")


def test_init_json_report(tmp_path):
    """--json gives scripts the paths, listeners and generated passwords in one document."""
    system = make_system(
        tmp_path, "--smtp-port", "3025", "--root-password", "root secret!", "--admin-port", "9443"
    )
    report_users = system.passwords
    assert report_users["root@example.test"] is None  # given, so not repeated
    assert all(report_users[f"{u}@example.test"] for u in ("postmaster", "admin"))
    assert load(system.config).listeners[0].port == 3025


def test_init_turns_on_the_admin_api_with_admin_as_system_administrator(tmp_path):
    """A13: init writes [admin] on 127.0.0.1 (port 8443 unless --admin-port) and makes the
    admin user the first system administrator."""
    admin = load(make_system(tmp_path / "a").config).admin
    assert (admin.enabled, admin.address, admin.port) == (True, "127.0.0.1", 8443)
    system = make_system(tmp_path / "b", "--admin-port", "9443")
    assert load(system.config).admin.port == 9443
    assert system.json("admin", "list") == [
        {"address": "admin@example.test", "system": True, "domains": [], "rights": "system"}
    ]
    clash = system.fails("init", "--data-dir", str(tmp_path / "c"), "--non-interactive",
                         "--admin-port", "2525")  # fmt: skip
    assert "--admin-port 2525" in clash and "its own port" in clash


def test_init_validates_before_touching_the_disk(tmp_path):
    """M4: a bad domain, clashing ports or a bad address stop init with a clear message."""
    data = tmp_path / "data"
    runner = CliRunner()
    base = ["init", "--data-dir", str(data), "--non-interactive"]
    bad_domain = runner.invoke(cli, [*base, "--domain", "exa mple.com"])
    assert bad_domain.exit_code == 1
    assert "domain" in bad_domain.stderr and "spaces" in bad_domain.stderr
    single = runner.invoke(cli, [*base, "--domain", "localhost"])
    assert single.exit_code == 1 and "e.g. example.com" in single.stderr
    ports = runner.invoke(cli, [*base, "--smtp-port", "2600", "--submission-port", "2600"])
    assert ports.exit_code == 1 and "every listener needs its own port" in ports.stderr
    port_range = runner.invoke(cli, [*base, "--smtps-port", "70000"])
    assert port_range.exit_code == 2 and "70000" in port_range.stderr
    address = runner.invoke(cli, [*base, "--address", "localhost"])
    assert address.exit_code == 2 and "not an IP address" in address.stderr
    empty = runner.invoke(cli, [*base, "--root-password", ""])
    assert empty.exit_code == 1 and "--root-password is empty" in empty.stderr
    assert not data.exists()


def test_init_without_a_terminal_needs_no_flag(tmp_path):
    """S8: with stdin not a TTY, init runs without prompting even without --non-interactive."""
    data = tmp_path / "data"
    out = run_mailmax("--json", "init", "--data-dir", str(data), "--domain", "example.test",
                      input="")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["object"]
    assert report["config"] == str(data / "mailmax.toml")
    assert [u["password_generated"] for u in report["users"]] == [True, True, True]


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def test_the_printed_next_steps_work(tmp_path):
    """S8: the start command and the smtplib example printed by init deliver a message."""
    data = tmp_path / "data"
    smtp, submission, smtps = free_port(), free_port(), free_port()
    readers = [arg for name in ("pop3", "pop3s", "imap", "imaps")
               for arg in (f"--{name}-port", str(free_port()))]  # fmt: skip
    out = run_mailmax(
        "init", "--data-dir", str(data), "--domain", "example.test", "--non-interactive",
        "--postmaster-password", "pm secret 123", "--smtp-port", str(smtp),
        "--submission-port", str(submission), "--smtps-port", str(smtps), *readers,
        "--admin-port", str(free_port()),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    steps = [line.strip() for line in out.stdout.split("Next steps:", 1)[1].splitlines()]
    start = steps[steps.index("1. Start the server:") + 1]
    example = steps[steps.index("or:") - 1]
    assert start == f"twistd -n --pidfile= mailmax --data-dir {data}"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "&& twistd -n --pidfile= mailmax --data-dir data\n" in readme  # the same command
    command = shlex.split(start)
    server = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _accepts(submission), 20, "the submission listener")
        sent = subprocess.run(
            example.replace("PASSWORD", "pm secret 123"),
            shell=True, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        inbox = data / "mail" / "example.test" / "admin" / "new"
        wait_until(lambda: inbox.is_dir() and any(inbox.iterdir()), 20, "delivery to admin")
        (message,) = inbox.iterdir()
        assert message.read_bytes().endswith(b"hello\r\n")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
