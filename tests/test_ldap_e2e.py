"""A domain whose users come from a real slapd: delivery, SMTP AUTH, POP3 and IMAP log-ins,
``mailmax ldap test``, and slapd stopped mid-test (temporary failures, nothing lost)."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailmax.core.cli.main import cli
from tests.fixtures.server import MailMaxServer, default_sections
from tests.fixtures.slapd import LDAP_DOMAIN, Slapd, start_slapd

CAROL = f"carol@{LDAP_DOMAIN}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd of this module's own: the last test stops and restarts it."""
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[MailMaxServer]:
    """MailMax with example.test in SQL and ldap.test from LDAP (added with the CLI)."""
    data_dir = tmp_path_factory.mktemp("mailmax-ldap")
    sections = default_sections(data_dir)
    sections["server"] = {**sections["server"], "directory_cache_seconds": 0.0}
    sections["auth"] = {"failure_delay": 0.0, "max_failure_delay": 0.0}
    sections["ldap.corp"] = slapd.source()
    sections["admin"] = {"enabled": True, "port": 0}
    server = MailMaxServer(data_dir, sections)
    server.prepare()
    refused = _mailmax(server, "domain", "add", LDAP_DOMAIN, "--user-source", "ldap:nope")
    assert refused.exit_code == 1
    assert "no [ldap.nope] table" in refused.stderr and "ldap:corp" in refused.stderr
    assert (
        _mailmax(server, "domain", "add", LDAP_DOMAIN, "--user-source", "ldap:corp").exit_code == 0
    )
    assert _mailmax(server, "alias", "add", "team@example.test", CAROL).exit_code == 0
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)


def _mailmax(server: MailMaxServer, *args: str) -> Result:
    """Run a ``mailmax`` command in this process (the console script costs seconds each)."""
    return CliRunner().invoke(cli, ["--config", str(server.config_path), *args])


def _send(server: MailMaxServer, *recipients: str, subject: str = "hello") -> dict:
    with server.smtp() as client:
        return client.sendmail(
            "sender@outside.test",
            list(recipients),
            f"From: sender@outside.test\r\nSubject: {subject}\r\n\r\nbody\r\n",
        )


def test_mail_for_ldap_users_lands_in_their_mailbox(server: MailMaxServer) -> None:
    """S5: mail to an LDAP user and to its second LDAP address reaches one mailbox; unknown
    and disabled LDAP users are refused at RCPT."""
    _send(server, CAROL, f"c.smith@{LDAP_DOMAIN}", subject="to both")
    messages = server.wait_for_mail(CAROL, count=2)
    assert all(b"Subject: to both" in m for m in messages)
    with server.smtp() as client:
        client.ehlo()
        client.mail("sender@outside.test")
        code, text = client.rcpt(f"nobody@{LDAP_DOMAIN}")
        assert code == 550, text
        code, text = client.rcpt(f"dave@{LDAP_DOMAIN}")
        assert code == 550 and b"disabled" in text.lower(), text


def test_smtp_auth_checks_the_password_with_ldap(server: MailMaxServer) -> None:
    """S5: SMTP AUTH of an LDAP user binds as the user; CRAM-MD5 is refused with the reason."""
    with server.smtp("smtps") as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login(CAROL, "wrong")
        assert failed.value.smtp_code == 535
    with server.smtp("smtps") as client:
        client.ehlo()
        code, _ = client.login(CAROL, "carolsecret")
        assert code == 235
    with server.smtp("smtps") as client:
        client.ehlo()
        client.user, client.password = CAROL, "carolsecret"
        with pytest.raises(smtplib.SMTPAuthenticationError) as weak:
            client.auth("CRAM-MD5", client.auth_cram_md5, initial_response_ok=False)
    assert weak.value.smtp_code == 534 and b"kept in LDAP" in weak.value.smtp_error


def test_pop3_login_and_apop_refusal(server: MailMaxServer) -> None:
    """S5: POP3 USER/PASS of an LDAP user; APOP says why it cannot work for this account."""
    client = poplib.POP3_SSL("localhost", server.ports["pop3s"], context=server.ssl_context())
    try:
        with pytest.raises(poplib.error_proto, match="AUTH"):
            client.user(CAROL)
            client.pass_("wrong")
    finally:
        client.close()
    client = poplib.POP3_SSL("localhost", server.ports["pop3s"], context=server.ssl_context())
    try:
        client.user(CAROL)
        client.pass_("carolsecret")
        assert client.stat()[0] >= 2
    finally:
        client.quit()
    client = poplib.POP3_SSL("localhost", server.ports["pop3s"], context=server.ssl_context())
    try:
        with pytest.raises(poplib.error_proto, match="kept in LDAP"):
            client.apop(CAROL, "carolsecret")
    finally:
        client.close()


def test_imap_login_with_an_ldap_alias_address(server: MailMaxServer) -> None:
    """S5: IMAP LOGIN with the user's other LDAP address opens the user's own mailbox."""
    client = imaplib.IMAP4_SSL("localhost", server.ports["imaps"], ssl_context=server.ssl_context())
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(CAROL, "")
        client.login(f"c.smith@{LDAP_DOMAIN}", "carolsecret")
        status, data = client.select("INBOX")
        assert status == "OK" and int(data[0]) >= 2
    finally:
        client.logout()


def test_ldap_test_command_shows_what_is_found_and_why(server: MailMaxServer) -> None:
    """S5: ``mailmax ldap test`` shows the entry, the mailbox and the mapped attributes."""
    shown = _mailmax(server, "ldap", "test", f"c.smith@{LDAP_DOMAIN}")
    assert shown.exit_code == 0, shown.output
    assert "uid=carol,ou=people" in shown.stdout
    assert f"(mail=c.smith@{LDAP_DOMAIN})" in shown.stdout
    assert f"delivered to {CAROL}" in shown.stdout
    erin = _mailmax(server, "ldap", "test", f"erin@{LDAP_DOMAIN}").stdout
    assert "quota mb:" in erin and "25" in erin and "node-b" in erin
    missing = _mailmax(server, "ldap", "test", f"nobody@{LDAP_DOMAIN}")
    assert missing.exit_code == 1 and "no entry matches" in missing.stdout
    sql = _mailmax(server, "ldap", "test", "alice@example.test")
    assert sql.exit_code == 1 and "kept in SQL" in sql.stderr


def test_ldap_test_through_the_admin_api(server: MailMaxServer) -> None:
    """S5: the admin API answers what ``mailmax ldap test`` shows, and checks a password."""
    from tests.api_support import ApiClient, admin_cli

    admin_cli(server, "admin", "grant", "postmaster@example.test", "--system")
    token = admin_cli(
        server, "admin", "token", "create", "postmaster@example.test", "--name", "t"
    ).strip()
    client = ApiClient(server)
    body = {"address": f"c.smith@{LDAP_DOMAIN}", "password": "carolsecret"}
    shown = client.call("POST", "/api/v1/ldap/test", token, body)
    assert shown.status == 200, shown.raw
    assert shown.body["dn"].startswith("uid=carol,ou=people")
    assert f"(mail=c.smith@{LDAP_DOMAIN})" in shown.body["filter"]
    assert shown.body["why"] == f"mail to c.smith@{LDAP_DOMAIN} is delivered to {CAROL}"
    assert (shown.body["password"], shown.body["lookup"]) == ("accepted", "user")
    wrong = client.call("POST", "/api/v1/ldap/test", token, {**body, "password": "nope"})
    assert wrong.body["password"] == "refused"


def test_config_check_names_a_domain_whose_ldap_source_is_gone(server: MailMaxServer) -> None:
    """S5: ``mailmax config check`` of a config file without the domain's LDAP table says so."""
    text = server.config_path.read_text()
    start = text.index("[ldap.corp]")
    end = text.find("\n[", start + 1)
    other = server.config_path.with_name("without-ldap.toml")
    other.write_text(text[:start] + (text[end:] if end != -1 else ""))
    checked = CliRunner().invoke(cli, ["--config", str(other), "config", "check"])
    assert checked.exit_code == 1
    assert f"domain {LDAP_DOMAIN}: its users come from ldap:corp" in checked.output


def test_slapd_down_gives_temporary_failures_and_loses_nothing(
    server: MailMaxServer, slapd: Slapd
) -> None:
    """S5: with slapd stopped, RCPT and log-ins of LDAP users fail temporarily (never 5xx, never
    a log-in); SQL users work on; mail accepted for an alias of an LDAP user waits in the queue
    and is delivered once slapd is back."""
    before = len(server.messages(CAROL))
    slapd.stop()
    try:
        with server.smtp() as client:
            client.ehlo()
            client.mail("sender@outside.test")
            code, text = client.rcpt(CAROL)
            assert (code, text[:5]) == (451, b"4.4.3"), text
            assert client.rcpt("bob@example.test")[0] == 250
            assert client.rcpt("team@example.test")[0] == 250
            client.data(b"From: sender@outside.test\r\nSubject: during the outage\r\n\r\nx\r\n")
        with server.smtp("smtps") as client:
            client.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                client.login(CAROL, "carolsecret")
            assert failed.value.smtp_code == 454
            assert client.login("bob@example.test", "bobsecret")[0] == 235
        pop = poplib.POP3_SSL("localhost", server.ports["pop3s"], context=server.ssl_context())
        try:
            pop.user(CAROL)
            with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
                pop.pass_("carolsecret")
        finally:
            pop.close()
        imap = imaplib.IMAP4_SSL(
            "localhost", server.ports["imaps"], ssl_context=server.ssl_context()
        )
        try:
            with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
                imap.login(CAROL, "carolsecret")
        finally:
            imap.shutdown()
        server.wait_for_mail("bob@example.test", count=1)
        assert len(server.messages(CAROL)) == before
    finally:
        slapd.start()
    arrived = server.wait_for_mail(CAROL, count=before + 1, timeout=20)
    assert sum(b"during the outage" in m for m in arrived) == 1


def test_ldap_user_records_live_in_sql_keyed_by_address(server: MailMaxServer) -> None:
    """S5: an LDAP user's log-ins are recorded in SQL under its address; it gets no password
    there (its SQL record is disabled, so SQL can never log it in)."""
    directory = server.directory()
    try:
        assert directory.last_login(CAROL) is not None
        record = directory.get_user(CAROL)  # the plain SQL view of the record
        assert record is not None and not record.enabled and not record.has_password
    finally:
        directory.close()
    assert Path(server.maildir(CAROL)).is_dir()
