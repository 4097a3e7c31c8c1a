"""Mail in over SMTP, out over POP3, through one running server (S1, S2, S4)."""

from __future__ import annotations

import poplib
import time


def test_smtp_in_pop3_out_over_stls(mailmax):
    body = (
        b"From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: pop me\r\n\r\n"
        b".dot line\r\nend\r\n"
    )
    with mailmax.smtp() as client:
        client.sendmail("bob@remote.test", ["alice@example.test"], body)
    (stored,) = mailmax.wait_for_mail("alice@example.test")
    pop = poplib.POP3("127.0.0.1", mailmax.ports["pop3"], timeout=10)
    try:
        pop.stls(context=mailmax.ssl_context())
        pop.user("alice")
        pop.pass_("alicesecret")
        assert pop.stat()[0] == 1
        _, lines, _ = pop.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == stored
        pop.dele(1)
    finally:
        pop.quit()
    assert mailmax.messages("alice@example.test") == []


def test_pop3s_login_forms_share_the_directory(mailmax):
    for login in (
        "bob@example.test",
        "bob/example.test",
        "bob%example.test",
        "example.test/bob",
        "bob",
    ):
        pop = poplib.POP3_SSL(
            "localhost", mailmax.ports["pop3s"], timeout=10, context=mailmax.ssl_context()
        )
        try:
            pop.user(login)
            assert pop.pass_("bobsecret").startswith(b"+OK"), login
        finally:
            pop.quit()


def test_pop_before_smtp_lets_a_recent_mailbox_login_relay(mailmax_factory):
    """P5: after a POP3 log-in from this IP, the same IP may relay for the configured minutes."""
    server = mailmax_factory(smtp={"pop_before_smtp_minutes": 5})
    with server.smtp() as client:
        client.ehlo("x.test")
        client.mail("alice@example.test")
        assert client.rcpt("someone@remote.test")[0] == 554
    pop = poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=10, context=server.ssl_context()
    )
    try:
        pop.user("alice")
        pop.pass_("alicesecret")
    finally:
        pop.quit()
    with server.smtp() as client:
        client.ehlo("x.test")
        client.mail("alice@example.test")
        assert client.rcpt("someone@remote.test")[0] == 250


def test_without_pop_before_smtp_a_mailbox_login_does_not_open_relaying(mailmax):
    pop = poplib.POP3_SSL(
        "localhost", mailmax.ports["pop3s"], timeout=10, context=mailmax.ssl_context()
    )
    try:
        pop.user("alice")
        pop.pass_("alicesecret")
    finally:
        pop.quit()
    with mailmax.smtp() as client:
        client.ehlo("x.test")
        client.mail("alice@example.test")
        assert client.rcpt("someone@remote.test")[0] == 554


def test_mail_for_hosted_relay_and_backup_domains_is_accepted_from_anyone(mailmax):
    """A1/Q8/Q10: we are an MX for our relay-to-host and backup domains, so an untrusted,
    unauthenticated client may send to them; other remote domains stay closed (P11)."""
    from mailmax.core.directory.api import DomainType

    directory = mailmax.directory()
    try:
        directory.add_domain(
            "backup.test", str(mailmax.data_dir / "mail" / "backup.test"),
            type=DomainType.BACKUP, backup_priority=20,
        )  # fmt: skip
        directory.add_domain(
            "inside.test", str(mailmax.data_dir / "mail" / "inside.test"),
            type=DomainType.RELAY, delivery_host="127.0.0.1:2",
        )  # fmt: skip
    finally:
        directory.close()
    time.sleep(2.0)  # the server's directory cache
    with mailmax.smtp() as client:
        client.ehlo("x.test")
        client.mail("someone@remote.test")
        assert client.rcpt("anyone@backup.test")[0] == 250
        assert client.rcpt("anyone@inside.test")[0] == 250
        assert client.rcpt("anyone@elsewhere.test")[0] == 554
