"""Plugin scopes hold for every hook, over real SMTP (a real ``twistd mailmax``).

A plugin switched on for domain A acts on A's mail only: data hooks per recipient (port 25
splits a mixed transaction with 452 4.5.3, submission accepts once and treats each copy per
its recipient), mail_from in the authenticated sender's scope, connection hooks per
listening address; delivery hooks in the scope of each final mailbox (also after an alias).
"""

from __future__ import annotations

import smtplib
import textwrap
from email import message_from_bytes
from typing import Any

import pytest

from mailmax.testing import DOMAIN, TestServer, start_server

OTHER = "other.test"
THIRD = "third.test"

SUBJECTGUARD = textwrap.dedent(
    """
    from mailmax.plugin import Field, PluginSettings, hookimpl, reject

    SCOPES = ("system", "domain", "user")


    class Settings(PluginSettings):
        word: str = Field("forbidden", description="Refused in Subject.")


    @hookimpl
    def mailmax_data(envelope, message, changes, config):
        head = message.split(b"\\r\\n\\r\\n", 1)[0].lower()
        if b"subject:" in head and config.word.encode() in head:
            return reject("Subject refused", 550, "5.7.1")
        rcpts = ",".join(r.address for r in envelope.recipients)
        changes.add_header("X-Subject-Checked", rcpts)
        return None
    """
)

SENDERGATE = textwrap.dedent(
    """
    from mailmax.plugin import hookimpl, reject

    SCOPES = ("system", "domain", "user")


    @hookimpl
    def mailmax_mail_from(session, sender):
        return reject(f"{session.auth_user} may not send now", 550, "5.7.1")
    """
)

HELOGATE = textwrap.dedent(
    """
    from mailmax.plugin import hookimpl, reject

    SCOPES = ("system", "listener")


    @hookimpl
    def mailmax_helo(helo):
        return reject("Not on this address", 550, "5.7.1")
    """
)

AUTHGATE = textwrap.dedent(
    """
    from mailmax.plugin import hookimpl, reject


    @hookimpl
    def mailmax_auth(username):
        return reject(f"{username} may not log in here", 535, "5.7.8")
    """
)

RCPTGATE = textwrap.dedent(
    """
    from mailmax.plugin import hookimpl, reject


    @hookimpl
    def mailmax_rcpt_to(envelope, recipient):
        if envelope.sender.endswith("@spam.example"):
            return reject(f"<{recipient.address}>: sender refused here", 550, "5.7.1")
        return None
    """
)

SORTER = textwrap.dedent(
    """
    from mailmax.plugin import (
        Field, PluginSettings, deliver_to, discard, hookimpl, quarantine, redirect,
    )

    SCOPES = ("system", "domain", "user")


    class Settings(PluginSettings):
        mode: str = Field("none", description="What to do.")
        target: str = Field("", description="Where.")


    @hookimpl
    def mailmax_deliver(mailbox, config):
        if config.mode == "folder":
            return deliver_to(config.target, "sorted")
        if config.mode == "quarantine":
            return quarantine("looks bad", mailbox=config.target or None)
        if config.mode == "redirect":
            return redirect(config.target, reason="away")
        if config.mode == "discard":
            return discard("unwanted")
        return None
    """
)

PLUGINS = {
    "subjectguard.py": SUBJECTGUARD,
    "sendergate.py": SENDERGATE,
    "helogate.py": HELOGATE,
    "rcptgate.py": RCPTGATE,
    "authgate.py": AUTHGATE,
    "sorter.py": SORTER,
}


def add_domains(server: TestServer) -> None:
    """other.test with the user carol, third.test with dave and its quarantine mailbox."""
    directory = server.directory()
    try:
        directory.add_domain(OTHER, str(server.data_dir / "mail" / OTHER))
        directory.add_user(f"carol@{OTHER}", "carolsecret")
        directory.add_domain(THIRD, str(server.data_dir / "mail" / THIRD))
        directory.add_user(f"dave@{THIRD}", "davesecret")
        directory.add_user(f"quarantine@{THIRD}", "quarantinesecret")
        for name in ("eve", "fay", "gus"):
            directory.add_user(f"{name}@{THIRD}", f"{name}secret")
    finally:
        directory.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server with every test plugin loaded but switched off system-wide."""
    data = tmp_path_factory.mktemp("scopes")
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
        {"service": "smtp", "address": "127.0.0.2", "port": 0, "default_domain": DOMAIN},
        {"service": "submission", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
    ]
    settings = {name.removesuffix(".py"): {} for name in PLUGINS}
    settings["helogate"] = {"listeners": {"127.0.0.2": {"enabled": True}}}
    server = start_server(
        data,
        plugins=["aliases"],
        settings=settings,
        plugin_files=PLUGINS,
        sections={
            "listeners": listeners,
            "smtp": {"allow_plaintext_auth": True, "trusted_networks": ["127.0.0.3/32"]},
        },
    )
    add_domains(server)
    server.cli("plugin", "enable", "subjectguard", "--domain", DOMAIN)
    server.cli("plugin", "enable", "sendergate", "--user", f"bob@{DOMAIN}")
    server.cli("plugin", "enable", "rcptgate", "--domain", DOMAIN)
    server.cli("plugin", "enable", "authgate", "--user", f"dave@{THIRD}")
    server.cli("plugin", "enable", "sorter", "--domain", THIRD)
    server.cli("plugin", "set", "sorter", "mode=quarantine", f"target=quarantine@{THIRD}",
               "--domain", THIRD)  # fmt: skip
    assert server.reload().returncode == 0  # the overrides are read now, not after a while
    yield server
    server.stop()


def ports(server: TestServer) -> dict[str, int]:
    """The port of each listener, by address and service (ports.json lists them in order)."""
    import json

    items = json.loads((server.data_dir / "run" / "ports.json").read_text())
    return {f"{i['service']}@{i.get('address', '127.0.0.1')}": i["port"] for i in items}


def smtp(
    server: TestServer, address: str = "127.0.0.1", service: str = "smtp", source: str = ""
) -> smtplib.SMTP:
    """A client on the listener of ``service`` at ``address`` (from ``source``, if given)."""
    port = ports(server)[f"{service}@{address}"]
    return smtplib.SMTP(address, port, timeout=10, source_address=(source, 0) if source else None)


def login(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """AUTH PLAIN (smtplib would try CRAM-MD5 first, a failed log-in that slows the next)."""
    client.esmtp_features["auth"] = "PLAIN"
    return client.login(user, password)


def message(subject: str, to: str = "") -> bytes:
    """A small message."""
    return (
        f"From: sender@example.org\r\nTo: {to or 'you'}\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    ).encode()


def headers(raw: bytes) -> Any:
    """The parsed header of a stored message."""
    return message_from_bytes(raw)


def test_data_hook_of_domain_a_acts_on_a_only(server: TestServer) -> None:
    """The data hook on for example.test refuses its mail and changes it; other.test's mail
    passes untouched."""
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("x@example.org", [f"alice@{DOMAIN}"], message("a forbidden word"))
        assert refused.value.smtp_code == 550
        client.sendmail("x@example.org", [f"carol@{OTHER}"], message("a forbidden word"))
        client.sendmail("x@example.org", [f"alice@{DOMAIN}"], message("fine"))
    (carol,) = server.wait_for_mail(f"carol@{OTHER}")
    assert headers(carol)["X-Subject-Checked"] is None
    (alice,) = server.wait_for_mail(f"alice@{DOMAIN}")
    assert headers(alice)["X-Subject-Checked"] == f"alice@{DOMAIN}"
    assert headers(alice)["Subject"] == "fine"


def test_port_25_splits_a_mixed_transaction_with_452(server: TestServer) -> None:
    """One message to A and B on port 25: B gets 452 4.5.3 (not an error: the session goes on),
    A's plugins decide alone, and B arrives in the sender's next transaction, unchanged."""
    rcpts = [f"bob@{DOMAIN}", f"carol@{OTHER}"]
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        client.mail("x@example.org")
        assert client.rcpt(rcpts[0])[0] == 250
        code, text = client.rcpt(rcpts[1])
        assert (code, text[:5]) == (452, b"4.5.3")
        client.rset()
        refused = client.sendmail("x@example.org", rcpts, message("split me"))
        assert list(refused) == [rcpts[1]] and refused[rcpts[1]][0] == 452
        assert client.sendmail("x@example.org", list(refused), message("split me")) == {}
        for _ in range(30):  # 452s never count toward the error limit
            client.mail("x@example.org")
            assert client.rcpt(rcpts[0])[0] == 250
            assert client.rcpt(rcpts[1])[0] == 452
            client.rset()
        assert client.noop()[0] == 250
    (bob,) = server.wait_for_mail(f"bob@{DOMAIN}")
    assert headers(bob)["X-Subject-Checked"] == f"bob@{DOMAIN}"
    carol = server.wait_for_mail(f"carol@{OTHER}", 2)[-1]
    assert headers(carol)["Subject"] == "split me"
    assert headers(carol)["X-Subject-Checked"] is None


def test_submission_accepts_once_and_treats_each_copy_per_recipient(server: TestServer) -> None:
    """On submission nothing is split: one 250, A's copy changed by A's plugin, B's copy as
    sent; a copy A's plugin refuses goes back to the (local, authenticated) sender."""
    alice, carol = f"alice@{DOMAIN}", f"carol@{OTHER}"
    before = {a: len(server.messages(a)) for a in (alice, carol, f"postmaster@{DOMAIN}")}
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        login(client, f"postmaster@{DOMAIN}", "postmastersecret")
        assert client.sendmail(f"postmaster@{DOMAIN}", [alice, carol], message("hello")) == {}
        refused = client.sendmail(
            f"postmaster@{DOMAIN}", [alice, carol], message("forbidden thing")
        )
        assert refused == {}  # accepted once for both
    got_alice = server.wait_for_mail(alice, before[alice] + 1)[-1]
    assert headers(got_alice)["X-Subject-Checked"] == alice
    got_carol = server.wait_for_mail(carol, before[carol] + 2)[before[carol] :]
    assert [headers(m)["Subject"] for m in got_carol] == ["hello", "forbidden thing"]
    assert all(headers(m)["X-Subject-Checked"] is None for m in got_carol)
    bounce = server.wait_for_mail(f"postmaster@{DOMAIN}", before[f"postmaster@{DOMAIN}"] + 1)
    assert b"Subject refused" in bounce[-1] and alice.encode() in bounce[-1]
    assert len(server.messages(alice)) == before[alice] + 1  # the refused copy is not stored


def test_a_trusted_client_on_port_25_is_not_split(server: TestServer) -> None:
    """A client in trusted_networks is a mail client of ours: one transaction for A and B."""
    rcpts = [f"bob@{DOMAIN}", f"carol@{OTHER}"]
    before = {a: len(server.messages(a)) for a in rcpts}
    with smtp(server, source="127.0.0.3") as client:
        client.ehlo("relay.internal")
        assert client.sendmail(f"postmaster@{DOMAIN}", rcpts, message("trusted")) == {}
    bob = server.wait_for_mail(rcpts[0], before[rcpts[0]] + 1)[-1]
    carol = server.wait_for_mail(rcpts[1], before[rcpts[1]] + 1)[-1]
    assert headers(bob)["X-Subject-Checked"] == rcpts[0]
    assert headers(carol)["X-Subject-Checked"] is None


def test_all_recipients_refusing_refuses_the_message(server: TestServer) -> None:
    """The end of DATA refuses only when every recipient's verdict refuses."""
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        login(client, f"postmaster@{DOMAIN}", "postmastersecret")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(
                f"postmaster@{DOMAIN}", [f"alice@{DOMAIN}", f"bob@{DOMAIN}"], message("forbidden")
            )
        assert refused.value.smtp_code == 550


def test_mail_from_runs_in_the_authenticated_senders_scope(server: TestServer) -> None:
    """A mail_from plugin on for user bob refuses bob's submissions only; a port-25 client
    merely claiming to be bob selects no scope."""
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        login(client, f"bob@{DOMAIN}", "bobsecret")
        code, text = client.mail(f"bob@{DOMAIN}")
        assert code == 550 and b"may not send now" in text
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        login(client, f"alice@{DOMAIN}", "alicesecret")
        assert client.mail(f"alice@{DOMAIN}")[0] == 250
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        assert client.mail(f"bob@{DOMAIN}")[0] == 250


def test_auth_hook_runs_in_the_scope_of_the_user_logging_in(server: TestServer) -> None:
    """An auth plugin on for one user refuses that user's log-in only."""
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            login(client, f"dave@{THIRD}", "davesecret")
        assert b"may not log in here" in refused.value.smtp_error
    with smtp(server, service="submission") as client:
        client.ehlo("laptop")
        assert login(client, f"eve@{THIRD}", "evesecret")[0] == 235


def test_rcpt_hook_of_domain_a_refuses_for_a_only(server: TestServer) -> None:
    """A sender policy that depends on the recipient's domain runs at RCPT in its scope."""
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        client.mail("x@spam.example")
        assert client.rcpt(f"alice@{DOMAIN}")[0] == 550
        assert client.rcpt(f"carol@{OTHER}")[0] == 250


def test_connection_hook_on_one_listener_only(server: TestServer) -> None:
    """A HELO plugin switched on for the listening address 127.0.0.2 acts there only."""
    with smtp(server, "127.0.0.2") as client:
        assert client.ehlo("mta.example.org")[0] == 550
    with smtp(server, "127.0.0.1") as client:
        assert client.ehlo("mta.example.org")[0] == 250


def test_a_scope_the_hooks_cannot_honour_is_refused_by_the_cli(server: TestServer) -> None:
    """`plugin enable --domain/--user` of a connection-only plugin: exit 1, why, nothing kept."""
    for option, name in (("--domain", DOMAIN), ("--user", f"alice@{DOMAIN}")):
        result = server.cli("plugin", "enable", "helogate", option, name, check=False)
        assert result.returncode == 1
        kind = option.removeprefix("--")
        assert f"cannot be set per {kind}" in result.stderr
        assert "mailmax_helo" in result.stderr and "nothing was changed" in result.stderr
    directory = server.directory()
    try:
        assert directory.get_plugin_overrides("helogate") == {}
    finally:
        directory.close()


def test_delivery_hook_runs_in_the_final_mailboxs_scope(server: TestServer) -> None:
    """third.test quarantines its mail; an alias of example.test pointing to dave@third.test
    gets third.test's delivery policy, alice's own copy goes to her INBOX; the quarantined
    copy names the plugin and the reason."""
    directory = server.directory()
    try:
        directory.add_alias(f"team@{DOMAIN}", [f"alice@{DOMAIN}", f"dave@{THIRD}"])
    finally:
        directory.close()
    before = len(server.messages(f"alice@{DOMAIN}"))
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        client.sendmail("x@example.org", [f"team@{DOMAIN}"], message("to the team"))
    quarantined = server.wait_for(
        lambda: server.messages(f"quarantine@{THIRD}", "Quarantine"), what="a quarantined copy"
    )
    assert headers(quarantined[-1])["X-MailMax-Quarantine"] == "sorter: looks bad"
    assert headers(quarantined[-1])["Subject"] == "to the team"
    got = server.wait_for_mail(f"alice@{DOMAIN}", before + 1)
    assert headers(got[-1])["Subject"] == "to the team"
    assert server.messages(f"dave@{THIRD}") == []
    note = f"quarantined in quarantine@{THIRD}/Quarantine by sorter: looks bad"
    server.wait_for(lambda: note in server.log_text(), what="the delivery note in the log")


def test_each_delivery_outcome_per_user(server: TestServer) -> None:
    """Per-user settings of one delivery plugin: a folder, a redirect (the target gets its own
    policy: carol's INBOX), a discard; the mail log names the plugin and its reason."""
    for user, pairs in (
        ("eve", ["mode=folder", "target=Sorted"]),
        ("fay", ["mode=redirect", f"target=carol@{OTHER}"]),
        ("gus", ["mode=discard"]),
    ):
        server.cli("plugin", "set", "sorter", *pairs, "--user", f"{user}@{THIRD}")
    carol_before = len(server.messages(f"carol@{OTHER}"))
    assert server.reload().returncode == 0  # the overrides are read now, not after a while
    with smtp(server) as client:
        client.ehlo("mta.example.org")
        for user in ("eve", "fay", "gus"):
            client.sendmail("x@example.org", [f"{user}@{THIRD}"], message(f"for {user}"))
    sorted_ = server.wait_for(lambda: server.messages(f"eve@{THIRD}", "Sorted"), what="Sorted")
    assert headers(sorted_[-1])["Subject"] == "for eve"
    carol = server.wait_for_mail(f"carol@{OTHER}", carol_before + 1)
    assert headers(carol[-1])["Subject"] == "for fay"
    log = server.wait_for(
        lambda: "discarded by sorter: unwanted" in (text := server.log_text()) and text,
        what="the discard note",
    )
    assert f"redirected to carol@{OTHER} by sorter: away" in log
    assert "to folder Sorted by sorter: sorted" in log
    for user in ("eve", "fay", "gus"):
        assert server.messages(f"{user}@{THIRD}") == []
