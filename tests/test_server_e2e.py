"""The whole server over real sockets: start-up, delivery, crash safety, shutdown (S1, Q1, S4)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from tests.fixtures.ports import wait_until

ROOT = Path(__file__).resolve().parents[1]
TWISTD = str(Path(sys.executable).with_name("twistd"))


def send(server, to="alice@example.test", body="Hello Alice.\r\n", sender="bob@remote.test"):
    message = f"From: {sender}\r\nTo: {to}\r\nSubject: test\r\n\r\n{body}"
    with server.smtp() as client:
        client.ehlo("client.remote.test")
        refused = client.sendmail(sender, [to], message.encode())
        assert refused == {}
    return message.encode()


def test_message_lands_in_the_maildir_with_a_received_header(mailmax):
    """S1 + S4: accepted over SMTP, delivered into the recipient's INBOX (new/)."""
    sent = send(mailmax)
    (stored,) = mailmax.wait_for_mail("alice@example.test")
    assert stored.startswith(
        b"Return-Path: <bob@remote.test>\r\nDelivered-To: alice@example.test\r\n"
        b"Received: from client.remote.test"
    )
    assert stored.endswith(sent)
    assert b"by mail.example.test" in stored.split(b"\r\n\r\n")[0]
    assert list((mailmax.maildir("alice@example.test") / "new").iterdir())
    assert mailmax.messages("bob@example.test") == []


def test_log_has_a_line_per_connection_and_accepted_message(mailmax):
    send(mailmax)
    mailmax.wait_for_mail("alice@example.test")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "alice@example.test" not in mailmax.log_text():
        time.sleep(0.1)
    log = mailmax.log_text()
    assert "127.0.0.1" in log
    assert "bob@remote.test" in log and "alice@example.test" in log


def test_a_user_added_with_the_cli_receives_mail_within_two_seconds(mailmax):
    """The running server sees directory changes without a restart."""
    with mailmax.smtp() as client:
        client.ehlo("x.test")
        client.mail("bob@remote.test")
        code, _ = client.rcpt("carol@example.test")
        assert code == 550
        client.rset()
    directory = mailmax.directory()
    try:
        directory.add_user("carol@example.test", "carolsecret")
    finally:
        directory.close()
    time.sleep(2.0)
    send(mailmax, to="carol@example.test")
    assert len(mailmax.wait_for_mail("carol@example.test")) == 1


def test_crash_after_250_delivers_exactly_once_after_restart(mailmax_factory, tmp_path):
    """Q1: kill -9 between the 250 and the delivery; after the restart the mail arrives once."""
    marker = tmp_path / "hold"
    marker.write_text("hold")
    server = mailmax_factory(
        plugins={
            "enabled": ["tests.plugins.hold"],
            "settings": {"tests.plugins.hold": {"marker": str(marker)}},
        }
    )
    sent = [send(server, body=f"message {i}\r\n") for i in range(3)]
    time.sleep(0.5)
    assert server.messages("alice@example.test") == []
    server.kill()
    marker.unlink()
    server.start()
    stored = server.wait_for_mail("alice@example.test", count=3)
    time.sleep(1.5)  # a duplicate would show up here
    stored = server.messages("alice@example.test")
    assert len(stored) == 3
    assert sorted(m.split(b"\r\n\r\n", 1)[1] for m in stored) == sorted(
        m.split(b"\r\n\r\n", 1)[1] for m in sent
    )


def test_sigterm_lets_a_transaction_in_flight_finish(mailmax):
    """SIGTERM: no new connections; a transaction already in DATA completes and is kept."""
    client = smtplib.SMTP("127.0.0.1", mailmax.smtp_port, timeout=10)
    client.ehlo("x.test")
    client.mail("bob@remote.test")
    client.rcpt("alice@example.test")
    client.putcmd("data")
    assert client.getreply()[0] == 354
    mailmax.signal(signal.SIGTERM)
    time.sleep(0.5)
    client.send(b"Subject: in flight\r\n\r\nstill here\r\n.\r\n")
    code, text = client.getreply()
    assert code == 250, text
    client.close()
    # twistd re-raises the signal it stopped on, after a clean shutdown
    assert mailmax.proc.wait(15) in (0, -signal.SIGTERM)
    assert "MailMax stopped" in mailmax.log_text()
    # the accepted message is in the spool or the Maildir, never half-written
    spool = mailmax.data_dir / "queue"
    assert (
        not any(p.is_file() for p in (spool / "tmp").rglob("*"))
        if (spool / "tmp").exists()
        else True
    )
    mailmax.start()
    stored = mailmax.wait_for_mail("alice@example.test")
    assert stored[0].endswith(b"still here\r\n")


def test_twistd_lists_the_mailmax_options():
    out = subprocess.run(
        [TWISTD, "mailmax", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--data-dir" in out.stdout


def test_bad_config_stops_twistd_with_a_clear_message(tmp_path):
    (tmp_path / "mailmax.toml").write_text("[smtp]\nmax_hops = 0\n")
    out = subprocess.run(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            "mailmax",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "smtp.max_hops" in out.stderr + out.stdout


def test_example_tac_runs_a_server(mailmax_factory):
    """``twistd -ny tac/mailmax.tac`` serves SMTP from the config named by MAILMAX_CONFIG."""
    server = mailmax_factory()
    server.stop()
    env = {**os.environ, "MAILMAX_CONFIG": str(server.config_path)}
    ports = server.data_dir / "run" / "ports.json"
    ports.unlink(missing_ok=True)  # only the new server's ports count
    log_path = server.data_dir / "tac-twistd.log"
    proc = subprocess.Popen(
        [TWISTD, "-ny", str(ROOT / "tac" / "mailmax.tac"), "--pidfile=", f"--logfile={log_path}"],
        cwd=server.data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    def smtp_port() -> int:
        assert proc.poll() is None, "the server exited"
        return {p["service"]: p["port"] for p in json.loads(ports.read_text())}["smtp"]

    def answers() -> bool:
        with smtplib.SMTP("127.0.0.1", smtp_port(), timeout=10) as client:
            return client.ehlo()[0] == 250

    try:
        try:
            wait_until(answers, 30, "SMTP of the server started from the .tac file")
        except TimeoutError as exc:
            log = log_path.read_text(errors="replace") if log_path.exists() else "(no log)"
            raise AssertionError(f"{exc}\n--- its log ---\n{log[-4000:]}") from None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_wheel_ships_the_twistd_dropin_without_shadowing_twisted(tmp_path):
    """``pip install .`` gives ``twistd mailmax``: the wheel has the dropin, no twisted/__init__."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mailmax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/mailmax_plugin.py" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
