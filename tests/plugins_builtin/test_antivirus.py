"""The antivirus plugin over real SMTP with a real clamd (V1-V5, Q13)."""

from __future__ import annotations

import json
import smtplib
import sys
from pathlib import Path
from typing import Any

from mailmax.plugins.antivirus.mime import attachments
from mailmax.plugins.antivirus.tests.messages import clean_message, nested_message
from mailmax.testing import TestServer
from tests.fixtures.clamd import TEST_VIRUS, TEST_VIRUS_NAME, Clamd

DEFAULTS = ["aliases", "spamtrap", "forwarding", "monitor", "catchall"]
SCRIPTS = Path(__file__).parents[2] / "mailmax" / "plugins" / "antivirus" / "tests"


def start(mailmax_server: Any, clamd: Clamd | str, **settings: Any) -> TestServer:
    """A server with the antivirus plugin on, talking to ``clamd``."""
    socket = clamd if isinstance(clamd, str) else str(clamd.socket_path)
    return mailmax_server(
        plugins=[*DEFAULTS, "antivirus"],
        settings={"antivirus": {"clamd_socket": socket, "timeout": 10, **settings}},
    )


def crlf(message: bytes) -> bytes:
    """``message`` with CRLF line ends, as SMTP wants them."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def data_reply(server: TestServer, message: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    """The reply to the end of DATA."""
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail("sender@elsewhere.test")
        for address in rcpts:
            assert client.rcpt(address)[0] == 250
        return client.data(crlf(message))


def test_infected_attachment_nested_two_levels_is_refused(mailmax_server, clamd_server) -> None:
    """V2, V3: the default inbound action refuses at the end of DATA naming the virus."""
    server = start(mailmax_server, clamd_server)
    code, text = data_reply(server, nested_message(), ["alice@example.test"])
    assert code == 554 and b"5.7.1" in text and TEST_VIRUS_NAME.encode() in text, text
    assert "virus " + TEST_VIRUS_NAME in server.log_text()


def test_clean_message_passes_with_its_header(mailmax_server, clamd_server) -> None:
    """V3: a clean message is delivered once, with the scan header."""
    server = start(mailmax_server, clamd_server)
    assert data_reply(server, clean_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for_mail("alice@example.test")
    assert b"X-Virus-Scanned: clean (clamd) on mail.example.test" in stored


def test_quarantine_puts_the_copy_in_the_quarantine_folder(mailmax_server, clamd_server) -> None:
    """V3: quarantine accepts and stores the message in the named folder, not the INBOX."""
    server = start(mailmax_server, clamd_server, inbound_action="quarantine")
    assert data_reply(server, nested_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for(lambda: server.messages("alice@example.test", "Quarantine"))
    assert b"X-MailMax-Quarantine: antivirus: virus " + TEST_VIRUS_NAME.encode() in stored
    assert server.messages("alice@example.test") == []


def test_disinfect_replaces_the_infected_part(mailmax_server, clamd_server) -> None:
    """V3: disinfect delivers the message with the infected part replaced by a short text."""
    server = start(mailmax_server, clamd_server, inbound_action="disinfect")
    assert data_reply(server, nested_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for_mail("alice@example.test")
    assert TEST_VIRUS not in stored and b"the inner text" in stored
    assert b"An attachment was removed: it contained " + TEST_VIRUS_NAME.encode() in stored
    assert b"X-Virus-Scanned: infected, disinfected" in stored


def test_scanner_down_tempfails_then_accepts(mailmax_server, clamd_server, tmp_path) -> None:
    """V3: clamd unreachable gives 451 4.3.0; once it is back the same message is accepted."""
    link = tmp_path / "clamd.sock"
    server = start(mailmax_server, str(link))
    code, text = data_reply(server, clean_message(), ["alice@example.test"])
    assert code == 451 and b"4.3.0" in text
    link.symlink_to(clamd_server.socket_path)
    assert data_reply(server, clean_message(), ["alice@example.test"])[0] == 250
    assert len(server.wait_for_mail("alice@example.test")) == 1


def test_accept_unscanned_when_the_admin_chooses(mailmax_server, tmp_path) -> None:
    """V3: on_failure=accept delivers with a header saying it was not scanned."""
    server = start(mailmax_server, str(tmp_path / "none.sock"), on_failure="accept")
    assert data_reply(server, clean_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for_mail("alice@example.test")
    assert b"X-Virus-Scanned: not scanned: the scanner failed" in stored


def test_one_recipient_on_one_off_is_split_on_port_25(mailmax_server, clamd_server) -> None:
    """V4: bob has scanning off; on port 25 his RCPT after alice's gets 452 and comes in the
    next transaction, where the virus reaches him unscanned, as he chose."""
    server = start(mailmax_server, clamd_server)
    server.cli("user", "edit", "bob@example.test", "--no-virus-check")
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail("sender@elsewhere.test")
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 452
        assert client.data(crlf(nested_message()))[0] == 554
        client.rset()
        client.mail("sender@elsewhere.test")
        assert client.rcpt("bob@example.test")[0] == 250
        assert client.data(crlf(nested_message()))[0] == 250
    (stored,) = server.wait_for_mail("bob@example.test")
    assert b"X-Virus-Scanned" not in stored
    assert server.messages("alice@example.test") == []


def test_bulk_switch_for_the_users_of_a_domain(mailmax_server, clamd_server) -> None:
    """V4: `mailmax antivirus users DOMAIN --off` switches every user off; --on back on."""
    server = start(mailmax_server, clamd_server)
    server.cli("antivirus", "users", "example.test", "--off")
    server.wait_for(lambda: data_reply(server, nested_message(), ["alice@example.test"])[0] == 250)
    unknown = server.cli("antivirus", "users", "nowhere.test", "--on", check=False)
    assert unknown.returncode == 1 and "no domain 'nowhere.test'" in unknown.stderr
    server.cli("antivirus", "users", "example.test", "--on")
    server.wait_for(lambda: data_reply(server, nested_message(), ["bob@example.test"])[0] == 554)


def test_system_only_settings_are_refused_per_domain(mailmax_server, clamd_server) -> None:
    """V1: the command, the update command and the socket are set in the config file only."""
    server = start(mailmax_server, clamd_server)
    for pair in ("command=/bin/rm %d", "update_command=freshclam", "clamd_socket=/tmp/x"):
        done = server.cli(
            "plugin", "set", "antivirus", pair, "--domain", "example.test", check=False
        )
        assert done.returncode == 1
        assert "can only be set system-wide" in done.stderr + done.stdout
    done = server.cli(
        "plugin", "set", "antivirus", "inbound_action=quarantine", "--domain", "example.test"
    )
    assert done.returncode == 0


def test_external_command_scanner(mailmax_server, tmp_path) -> None:
    """V1: an external command that removes the infected attachment makes the message refused."""
    command = f"{sys.executable} {SCRIPTS / 'remove_matching.py'} %d *virus*"
    server = mailmax_server(
        plugins=[*DEFAULTS, "antivirus"],
        settings={"antivirus": {"scanner": "command", "command": command}},
    )
    code, text = data_reply(server, nested_message(), ["alice@example.test"])
    assert code == 554 and b"removed by the scanner" in text
    assert data_reply(server, clean_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for_mail("alice@example.test")
    assert b"X-Virus-Scanned: clean (external command)" in stored


def test_status_over_the_admin_channel(mailmax_server, clamd_server) -> None:
    """V5: `mailmax antivirus status` asks the running server, which asks clamd."""
    server = start(mailmax_server, clamd_server)
    done = server.cli("antivirus", "status", "--json")
    status = json.loads(done.stdout)
    assert status["clamd"] == "answering" and status["clamd_version"].startswith("ClamAV")
    assert status["update_command"] is None
    refused = server.cli("antivirus", "update", check=False)
    assert refused.returncode == 1 and "no update command" in refused.stderr + refused.stdout


__all__ = ["smtplib"]


def submission_server(mailmax_server: Any, clamd: Clamd, **settings: Any) -> TestServer:
    """A server with port 25 and submission (plain-text AUTH allowed for the test)."""
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": "example.test"},
        {"service": "submission", "address": "127.0.0.1", "port": 0,
         "default_domain": "example.test"},
    ]  # fmt: skip
    return mailmax_server(
        plugins=[*DEFAULTS, "antivirus"],
        settings={"antivirus": {"clamd_socket": str(clamd.socket_path), **settings}},
        sections={"listeners": listeners, "smtp": {"allow_plaintext_auth": True}},
    )


def submit(server: TestServer, sender: str, password: str, rcpts: list[str], message: bytes):
    """Send over submission as ``sender``; smtplib's refused recipients."""
    ports = json.loads((server.data_dir / "run" / "ports.json").read_text())
    port = next(p["port"] for p in ports if p["service"] == "submission")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("laptop")
        client.esmtp_features["auth"] = "PLAIN"
        client.login(sender, password)
        return client.sendmail(sender, rcpts, crlf(message))


def test_submission_is_not_split_and_the_sender_is_told(
    mailmax_server, clamd_server, tmp_path
) -> None:
    """V3, V4: on submission one 250 serves alice (scanning on: her copy is refused and returned
    to the authenticated local sender) and bob (scanning off: he gets it); the sender, the
    alert address and alice are told of the virus."""
    server = submission_server(
        mailmax_server,
        clamd_server,
        notify_sender=True,
        notify_recipient=True,
        alert="postmaster@example.test",
    )
    server.cli("user", "edit", "bob@example.test", "--no-virus-check")
    sender = "postmaster@example.test"
    rcpts = ["alice@example.test", "bob@example.test"]
    assert submit(server, sender, "postmastersecret", rcpts, nested_message()) == {}
    (got,) = server.wait_for_mail("bob@example.test")
    assert TEST_VIRUS in [part.payload for part in attachments(got, 8)]  # as sent, unscanned
    (notice,) = server.wait_for_mail("alice@example.test")
    assert b"Subject: Virus found: " + TEST_VIRUS_NAME.encode() in notice
    told = server.wait_for_mail(sender, 2)  # the notice (sender and alert address are one) and
    assert any(b"5.7.1" in m and b"alice@example.test" in m for m in told)  # the returned copy


def test_an_outside_sender_is_never_told(mailmax_server, clamd_server) -> None:
    """V3: notify_sender never writes to an unauthenticated (possibly forged) sender."""
    server = start(mailmax_server, clamd_server, notify_sender=True, notify_recipient=True)
    code, _ = data_reply(server, nested_message(), ["alice@example.test"])
    assert code == 554
    (notice,) = server.wait_for_mail("alice@example.test")
    assert b"Virus found" in notice
    assert "virus notice to sender@elsewhere.test" not in server.log_text()
    queued = server.data_dir / "queue" / "env"
    server.wait_for(lambda: not list(queued.glob("*.json")), what="an empty queue")


def test_definition_update_over_the_admin_channel(mailmax_server, fresh_clamd, tmp_path) -> None:
    """V5: `mailmax antivirus update` runs the update command (which drops a new signature into
    clamd's database) and has clamd reload: a message clamd passed before is now refused."""
    from tests.fixtures.clamd import LATER_CONTENT, LATER_NAME, LATER_SIGNATURE_LINE

    source = tmp_path / "later.ndb"
    source.write_text(LATER_SIGNATURE_LINE)
    log = tmp_path / "updates.log"
    update = (
        f"{sys.executable} {SCRIPTS / 'drop_signature.py'} {source} {fresh_clamd.database} {log}"
    )
    server = start(mailmax_server, fresh_clamd, update_command=update)
    later = nested_message(LATER_CONTENT, "later.bin")
    assert data_reply(server, later, ["alice@example.test"])[0] == 250
    done = server.cli("antivirus", "update", "--json")
    assert json.loads(done.stdout)["object"]["version"].startswith("ClamAV")
    fresh_clamd.wait_catches(LATER_CONTENT)
    code, text = data_reply(server, later, ["alice@example.test"])
    assert code == 554 and LATER_NAME.encode() in text
    status = json.loads(server.cli("antivirus", "status", "--json").stdout)
    assert status["last_update"]["ok"] is True and log.read_text() == "run\n"


def test_update_at_start_does_not_delay_start_up(mailmax_server, fresh_clamd, tmp_path) -> None:
    """V5: with update_at_start the update runs once the server is up, and clamd reloads."""
    from tests.fixtures.clamd import LATER_CONTENT, LATER_SIGNATURE_LINE

    source = tmp_path / "later.ndb"
    source.write_text(LATER_SIGNATURE_LINE)
    log = tmp_path / "updates.log"
    update = (
        f"{sys.executable} {SCRIPTS / 'drop_signature.py'} {source} {fresh_clamd.database} {log}"
    )
    server = start(mailmax_server, fresh_clamd, update_command=update, update_at_start=True)
    server.wait_for(log.exists, what="the update at start")
    fresh_clamd.wait_catches(LATER_CONTENT)
    status = server.wait_for(
        lambda: json.loads(server.cli("antivirus", "status", "--json").stdout)["last_update"]
    )
    assert status["ok"] is True


def test_bad_settings_are_refused_with_what_is_allowed(mailmax_server, clamd_server) -> None:
    """Settings the plugin cannot use are refused by the CLI, saying why; nothing changes."""
    server = start(mailmax_server, clamd_server)
    bad = server.cli("plugin", "set", "antivirus", "update_daily_at=25:00", check=False)
    assert bad.returncode == 1 and "HH:MM" in bad.stderr + bad.stdout
    bad = server.cli("plugin", "set", "antivirus", "update_every_hours=6", check=False)
    assert bad.returncode == 1 and "update_command is empty" in bad.stderr + bad.stdout
    bad = server.cli("plugin", "set", "antivirus", "alert=nobody", "--domain", "example.test",
                     check=False)  # fmt: skip
    assert bad.returncode == 1 and "one e-mail address" in bad.stderr + bad.stdout


def test_switched_on_for_one_domain_only(mailmax_server, clamd_server) -> None:
    """V4: off system-wide, on for example.test: its users' mail is scanned after a reload."""
    server = mailmax_server(
        plugins=DEFAULTS, settings={"antivirus": {"clamd_socket": str(clamd_server.socket_path)}}
    )
    assert data_reply(server, nested_message(), ["alice@example.test"])[0] == 250
    server.cli("plugin", "enable", "antivirus", "--domain", "example.test")
    assert server.reload().returncode == 0
    code, text = data_reply(server, nested_message(), ["alice@example.test"])
    assert code == 554 and TEST_VIRUS_NAME.encode() in text


def test_quarantine_in_a_named_mailbox(mailmax_server, clamd_server) -> None:
    """V3: with quarantine_mailbox the infected copy goes to that mailbox's folder."""
    server = start(
        mailmax_server,
        clamd_server,
        inbound_action="quarantine",
        quarantine_mailbox="postmaster@example.test",
        quarantine_folder="Viruses",
    )
    assert data_reply(server, nested_message(), ["alice@example.test"])[0] == 250
    (stored,) = server.wait_for(lambda: server.messages("postmaster@example.test", "Viruses"))
    assert b"Delivered-To: alice@example.test" in stored or b"alice@example.test" in stored
    assert server.messages("alice@example.test") == []
