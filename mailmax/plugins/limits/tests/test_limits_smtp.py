"""Sending limits and the recipient count over real SMTP: a domain's session limit holds for
its authenticated users only, a user's daily limit survives a restart, and a repeated RCPT
counts toward ``[smtp] max_recipients``."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable, Iterator

import pytest

from mailmax.plugins.limits import counts
from mailmax.testing import TestServer, start_server

PLUGINS = ["bans", "aliases", "spamtrap", "forwarding", "monitor", "catchall", "limits"]
MESSAGE = b"Subject: limits\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": "example.test"},
        {"service": "submission", "address": "127.0.0.1", "port": 0,
         "default_domain": "example.test"},
    ]  # fmt: skip
    started = start_server(
        tmp_path_factory.mktemp("limits"),
        plugins=PLUGINS,
        sections={
            "listeners": listeners,
            "smtp": {"allow_plaintext_auth": True, "max_recipients": 3},
        },
    )
    yield started
    started.stop()


def submission(server: TestServer, user: str) -> smtplib.SMTP:
    """A submission session authenticated as ``user`` (password: name + ``secret``)."""
    ports = json.loads((server.data_dir / "run" / "ports.json").read_text())
    port = next(p["port"] for p in ports if p["service"] == "submission")
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("laptop")
    client.esmtp_features["auth"] = "PLAIN"
    client.login(user, user.partition("@")[0] + "secret")
    return client


def send(client: smtplib.SMTP, sender: str, rcpt: str) -> tuple[int, bytes]:
    """One message; the reply to MAIL FROM when it is refused, else the reply to DATA."""
    code, text = client.mail(sender)
    if code != 250:
        return code, text
    assert client.rcpt(rcpt)[0] == 250
    return client.data(MESSAGE)


def test_a_repeated_recipient_counts_toward_max_recipients(server: TestServer) -> None:
    with server.smtp() as client:
        client.ehlo("client.test")
        assert client.mail("x@remote.test")[0] == 250
        for _ in range(3):
            assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt("alice@example.test") == (452, b"4.5.3 Too many recipients")
        assert client.rcpt("bob@example.test") == (452, b"4.5.3 Too many recipients")
        assert client.data(MESSAGE)[0] == 250
    (stored,) = server.wait_for_mail("alice@example.test")
    assert b"hello" in stored


def test_domain_session_limit_holds_for_its_users_only(server: TestServer) -> None:
    server.cli("domain", "edit", "example.test", "--session-send-messages", "2")
    try:
        server.wait_for(lambda: send_three_as_postmaster(server), what="the new domain limit")
        with server.smtp() as client:  # an outside sender: the domain's limit is not theirs
            client.ehlo("client.test")
            for _ in range(3):
                assert send(client, "x@remote.test", "bob@example.test")[0] == 250
    finally:
        server.cli("domain", "edit", "example.test", "--session-send-messages", "0")


def send_three_as_postmaster(server: TestServer) -> bool:
    """True when the third message of one session is refused for the domain's limit."""
    with submission(server, "postmaster@example.test") as client:
        replies = [send(client, "postmaster@example.test", "bob@example.test") for _ in range(3)]
    assert [code for code, _ in replies[:2]] == [250, 250]
    if replies[2][0] == 250:
        return False
    assert replies[2] == (
        452,
        b"4.7.0 Session limit of 2 messages for users of example.test reached,"
        b" reconnect to send more",
    )
    return True


def on_one_utc_day(attempt: Callable[[str], None]) -> None:
    """Run ``attempt(suffix)``, and once more with a new suffix (new users, so nothing counted
    before is in the way) when it failed and the server's UTC day changed meanwhile: the
    server runs in its own process on the wall clock, and a day's counts start over at
    00:00 UTC."""
    for suffix in ("", "2"):
        day = counts.day_of(time.time())
        try:
            attempt(suffix)
            return
        except AssertionError:
            if suffix or counts.day_of(time.time()) == day:
                raise


def test_daily_limit_counts_across_sessions_and_a_restart(server: TestServer) -> None:
    def attempt(suffix: str) -> None:
        carol = f"carol{suffix}@example.test"
        with server.directory() as directory:  # a new user: nothing of hers is cached yet
            directory.add_user(
                carol, f"carol{suffix}secret", daily_send_messages=2, daily_limits_enabled=True
            )
        for _ in range(2):
            with submission(server, carol) as client:
                assert send(client, carol, "bob@example.test")[0] == 250
        server.stop()
        server.start()
        with submission(server, carol) as client:
            assert send(client, carol, "bob@example.test") == (
                452,
                f"4.7.0 Daily sending limit of 2 messages for {carol} reached,"
                " try again after 00:00 UTC".encode(),
            )

    on_one_utc_day(attempt)
    with submission(server, "bob@example.test") as client:  # bob has no daily limit
        assert send(client, "bob@example.test", "alice@example.test")[0] == 250


def test_a_message_without_size_is_measured_before_it_is_accepted(server: TestServer) -> None:
    """No SIZE=: the end of DATA refuses a message bigger than what is left of the day's
    megabytes, with the reply the SIZE= check gives; nothing of it is delivered or counted."""
    on_one_utc_day(lambda suffix: measured_before_accepted(server, suffix))


def measured_before_accepted(server: TestServer, suffix: str) -> None:
    """The body of the test above, for the users dave and erin with ``suffix``."""
    dave, erin = f"dave{suffix}@example.test", f"erin{suffix}@example.test"
    with server.directory() as directory:
        directory.add_user(dave, f"dave{suffix}secret", daily_send_mb=1, daily_limits_enabled=True)
        directory.add_user(erin, "erinsecret")
    body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600  # 600 KB
    with submission(server, dave) as client:
        for subject, expected in ((b"first", 250), (b"second", 452), (b"third", 452)):
            assert client.mail(dave)[0] == 250
            assert client.rcpt(erin)[0] == 250
            code, text = client.data(body.replace(b"big", subject))
            assert code == expected, text
        assert text == (
            f"4.7.0 Daily sending limit of 1 MB for {dave} reached,"
            " try again after 00:00 UTC".encode()
        )
        assert client.mail(dave)[0] == 250  # what is left still fits
        assert client.rcpt(erin)[0] == 250
        assert client.data(b"Subject: small\r\n\r\nhello\r\n")[0] == 250
        assert client.mail(dave)[0] == 250
        assert client.rcpt(erin)[0] == 250
        assert client.data(body * 2)[:2] == (
            552,
            f"5.3.4 Message larger than the daily sending limit of 1 MB for {dave}".encode(),
        )
    delivered = server.wait_for_mail(erin, count=2)
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in delivered) == [
        b"first",
        b"small",
    ]
