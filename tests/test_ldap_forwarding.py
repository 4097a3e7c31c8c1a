"""Forwarding targets held in LDAP (a real slapd), honoured by the forwarding plugin over real
SMTP: the remote copy reaches an SMTP sink with an SRS sender, the local copy follows the
plugin's keep-copy setting, and the CLI says where the targets come from."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from mailmax.core.cli.main import cli
from tests.fixtures.server import MailMaxServer, default_sections
from tests.fixtures.slapd import LDAP_DOMAIN, Slapd
from tests.fixtures.smtp_sink import SMTPSink, smtp_sink

FRANK = f"frank@{LDAP_DOMAIN}"  # mailRoutingAddress: frank.away@remote.test
GINA = f"gina@{LDAP_DOMAIN}"  # mailRoutingAddress: bob@example.test
BOB = "bob@example.test"


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SMTPSink]:
    """The smart host every remote copy goes to."""
    with smtp_sink(tmp_path_factory.mktemp("sink")) as found:
        yield found


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, slapd_server: Slapd, sink: SMTPSink
) -> Iterator[MailMaxServer]:
    """MailMax with ldap.test from LDAP, forwarding on, remote mail through the sink."""
    data_dir = tmp_path_factory.mktemp("mailmax-ldapfwd")
    sections = default_sections(data_dir)
    sections["server"] = {**sections["server"], "directory_cache_seconds": 0.0}
    sections["ldap.corp"] = slapd_server.source()
    sections["plugins"] = {"enabled": ["forwarding", "routing"]}
    sections["plugins.settings.routing"] = {
        "smart_host_enabled": True,
        "smart_host": f"127.0.0.1:{sink.port}",
        "smart_host_tls": "none",
    }
    server = MailMaxServer(data_dir, sections)
    server.prepare()
    added = _mailmax(server, "domain", "add", LDAP_DOMAIN, "--user-source", "ldap:corp")
    assert added.exit_code == 0, added.output
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)


def _mailmax(server: MailMaxServer, *args: str) -> Result:
    """Run a ``mailmax`` command in this process (the console script costs seconds each)."""
    return CliRunner().invoke(cli, ["--config", str(server.config_path), *args])


def _wait_log(server: MailMaxServer, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log:\n{server.log_text()[-3000:]}")
        time.sleep(0.05)


def _send(server: MailMaxServer, recipient: str, subject: str) -> None:
    with server.smtp() as client:
        refused = client.sendmail(
            "joe@sender.test",
            [recipient],
            f"From: joe@sender.test\r\nSubject: {subject}\r\n\r\nbody\r\n",
        )
    assert refused == {}


def test_ldap_forward_reaches_the_smart_host_and_keeps_the_local_copy(
    server: MailMaxServer, sink: SMTPSink
) -> None:
    """S5, A7: mail to an LDAP user whose entry forwards it goes on to the remote target
    (SRS sender of the user's domain) and, by default, stays in the user's mailbox too; with
    keep_local_copy=false set in MailMax, only the remote copy is made."""
    _send(server, FRANK, "first")
    (tx,) = sink.wait_for(1)
    assert tx["rcpts"] == ["frank.away@remote.test"]
    assert tx["mail_from"].startswith("SRS0=")
    assert tx["mail_from"].endswith(f"=sender.test=joe@{LDAP_DOMAIN}")
    assert b"Subject: first" in sink.message(tx)
    (kept,) = server.wait_for_mail(FRANK)
    assert b"Subject: first" in kept

    changed = _mailmax(
        server, "plugin", "set", "forwarding", "keep_local_copy=false", "--user", FRANK
    )
    assert changed.exit_code == 0, changed.output
    assert _mailmax(server, "reload").exit_code == 0  # the server reads the overrides at once
    _send(server, FRANK, "second")
    second = sink.wait_for(2)[-1]
    assert b"Subject: second" in sink.message(second)
    _wait_log(server, f"to={FRANK} folder=- result=discarded [decided by forwarding]")
    assert [m for m in server.messages(FRANK) if b"Subject: second" in m] == []


def test_ldap_forward_to_a_local_user(server: MailMaxServer) -> None:
    """S5, A7: an LDAP user forwarding to a local SQL user: both get one copy."""
    _send(server, GINA, "to bob")
    (forwarded,) = server.wait_for_mail(BOB)
    assert b"Subject: to bob" in forwarded
    (kept,) = server.wait_for_mail(GINA)
    assert b"Subject: to bob" in kept


def test_the_cli_says_where_targets_come_from(server: MailMaxServer) -> None:
    """S5, M4: `ldap test` and `plugin show` name the LDAP attribute as the targets' origin;
    setting targets for the user in MailMax is refused with the reason and changes nothing;
    the user's other forwarding settings stay MailMax's."""
    tested = _mailmax(server, "ldap", "test", FRANK)
    assert tested.exit_code == 0, tested.output
    assert "frank.away@remote.test" in tested.stdout
    assert "LDAP source corp, attribute mailRoutingAddress" in tested.stdout

    shown = _mailmax(server, "plugin", "show", "forwarding", "--user", FRANK, "--json")
    assert shown.exit_code == 0, shown.output
    settings = json.loads(shown.stdout)["settings"]
    assert settings["targets"] == {
        "value": ["frank.away@remote.test"],
        "from": "LDAP source corp, attribute mailRoutingAddress",
    }
    assert settings["keep_local_copy"]["from"] == f"user {FRANK}"

    refused = _mailmax(
        server, "plugin", "set", "forwarding", "targets=other@remote.test", "--user", FRANK
    )
    assert refused.exit_code == 1
    assert "come from LDAP source corp, attribute mailRoutingAddress" in refused.stderr
    assert "change them there" in refused.stderr
    again = _mailmax(server, "plugin", "show", "forwarding", "--user", FRANK, "--json")
    assert json.loads(again.stdout)["settings"]["targets"]["value"] == ["frank.away@remote.test"]


def test_an_ldap_user_without_the_attribute_forwards_nowhere(server: MailMaxServer) -> None:
    """S5: for a user of the source with no forward attribute, LDAP says "no forwarding":
    `plugin show` says so and a MailMax-side target is refused the same way."""
    carol = f"carol@{LDAP_DOMAIN}"
    shown = _mailmax(server, "plugin", "show", "forwarding", "--user", carol, "--json")
    assert json.loads(shown.stdout)["settings"]["targets"] == {
        "value": [],
        "from": "LDAP source corp, attribute mailRoutingAddress",
    }
    refused = _mailmax(server, "plugin", "set", "forwarding", f"targets={BOB}", "--user", carol)
    assert refused.exit_code == 1 and "change them there" in refused.stderr
