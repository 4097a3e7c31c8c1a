"""The submission sender check over real SMTP with AUTH: a login sends from its own address,
its aliases, its address at a domain alias and ``<>``; anything else is ``553 5.7.1`` naming
the login, unless the admin allows it for the user or the domain."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator

import pytest

from mailmax.testing import TestServer, start_server

PLUGINS = ["bans", "aliases", "spamtrap", "forwarding", "monitor", "catchall", "sendercheck"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": "example.test"},
        {"service": "submission", "address": "127.0.0.1", "port": 0,
         "default_domain": "example.test"},
    ]  # fmt: skip
    started = start_server(
        tmp_path_factory.mktemp("sendercheck"),
        plugins=PLUGINS,
        sections={"listeners": listeners, "smtp": {"allow_plaintext_auth": True}},
    )
    with started.directory() as directory:
        directory.add_domain_alias("example.invalid", "example.test")
        directory.add_alias("sales@example.test", ["alice@example.test", "bob@example.test"])
        directory.add_alias("boss@example.test", ["bob@example.test"])
    yield started
    started.stop()


def mail_from(server: TestServer, user: str, sender: str) -> tuple[int, bytes]:
    """The reply to MAIL FROM:<sender> on a submission session authenticated as ``user``."""
    ports = json.loads((server.data_dir / "run" / "ports.json").read_text())
    port = next(p["port"] for p in ports if p["service"] == "submission")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("laptop")
        client.esmtp_features["auth"] = "PLAIN"
        client.login(user, user.partition("@")[0] + "secret")
        return client.mail(sender)


@pytest.mark.parametrize(
    "sender",
    ["alice@example.test", "ALICE@Example.Test", "alice@example.invalid", "sales@example.test",
     "sales@example.invalid", ""],
)  # fmt: skip
def test_a_login_sends_from_what_is_its_own(server: TestServer, sender: str) -> None:
    assert mail_from(server, "alice@example.test", sender)[0] == 250


def test_other_senders_are_refused_naming_the_login(server: TestServer) -> None:
    for sender in ("bob@example.test", "boss@example.test", "ceo@elsewhere.test"):
        assert mail_from(server, "alice@example.test", sender) == (
            553,
            f"5.7.1 <{sender}>: Sender address rejected: not owned by user"
            " alice@example.test".encode(),
        )
    assert mail_from(server, "bob@example.test", "boss@example.test")[0] == 250
    with server.smtp() as client:  # port 25 without AUTH: not checked
        client.ehlo("client.test")
        assert client.mail("bob@example.test")[0] == 250


def test_the_admin_allows_more_per_user_and_per_domain(server: TestServer) -> None:
    server.cli(
        "plugin", "set", "sendercheck", "allowed_senders=*@elsewhere.test",
        "--user", "alice@example.test",
    )  # fmt: skip
    server.wait_for(
        lambda: mail_from(server, "alice@example.test", "ceo@elsewhere.test")[0] == 250,
        what="alice's allowed senders",
    )
    assert mail_from(server, "bob@example.test", "ceo@elsewhere.test")[0] == 553
    server.cli("plugin", "disable", "sendercheck", "--domain", "example.test")
    server.wait_for(
        lambda: mail_from(server, "bob@example.test", "ceo@elsewhere.test")[0] == 250,
        what="the check switched off for the domain",
    )
