"""The forwarding plugin over real SMTP (A7): local and remote targets, no loops, SRS."""

from __future__ import annotations

import re
import time

from mailmax.testing import TestServer
from tests.plugins_builtin.support import rcpt, send

ALICE, BOB = "alice@example.test", "bob@example.test"


def test_forwarding_to_local_and_remote_without_a_local_copy(mailmax_server) -> None:
    """A7: the local target gets the mail, the user keeps none, the remote copy is queued on its
    own with an SRS sender of our domain; a bounce to that sender is accepted and goes back to
    the original sender; a forged SRS address is unknown."""
    server: TestServer = mailmax_server()
    server.cli(
        "plugin",
        "set",
        "forwarding",
        f"targets={BOB},carol@remote.test",
        "keep_local_copy=false",
        "--user",
        ALICE,
    )
    # A reload reads the directory's overrides at once (otherwise the server sees them within
    # its directory cache time, which a busy machine may stretch past the next delivery).
    assert server.reload().returncode == 0
    assert send(server, [ALICE], subject="fwd", sender="joe@sender.test") == {}
    (message,) = server.wait_for_mail(BOB)
    assert b"Subject: fwd" in message
    # alice's delivery trace (written when the message was queued for her) stays behind
    assert message.startswith(b"Return-Path: <")
    assert message.count(b"Return-Path:") == 1 and message.count(b"Delivered-To:") == 1
    assert b"Delivered-To: bob@example.test\r\n" in message
    line = server.wait_for(
        lambda: next((x for x in server.log_text().splitlines() if "(plugin copy)" in x), ""),
        what="the remote copy queued",
    )
    srs_sender = re.search(r"from <(SRS0=[^>]+)> to carol@remote.test", line).group(1)
    assert srs_sender.endswith("=sender.test=joe@example.test")
    time.sleep(0.5)
    assert server.messages(ALICE) == []  # discard-local-copy

    assert rcpt(server, srs_sender, sender="") == 250  # the bounce path works
    forged = "SRS0=AAAA=" + srs_sender.split("=", 2)[2]
    assert rcpt(server, forged, sender="") == 550


def test_forwarding_between_local_users_never_loops(mailmax_server) -> None:
    """A7: alice -> bob and bob -> alice; each stores exactly one copy, nothing is lost even when
    both discard their local copy."""
    server: TestServer = mailmax_server(plugins=["forwarding"])
    server.cli("plugin", "set", "forwarding", f"targets={BOB}", "--user", ALICE)
    server.cli("plugin", "set", "forwarding", f"targets={ALICE}", "--user", BOB)
    assert send(server, [ALICE], subject="one") == {}
    server.wait_for_mail(ALICE)
    server.wait_for_mail(BOB)

    server.cli("plugin", "set", "forwarding", "keep_local_copy=false", "--user", ALICE)
    server.cli("plugin", "set", "forwarding", "keep_local_copy=false", "--user", BOB)
    time.sleep(0.5)  # the server sees directory changes within directory_cache_seconds
    assert send(server, [ALICE], subject="two") == {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(server.messages(ALICE) + server.messages(BOB)) < 3:
        time.sleep(0.05)
    time.sleep(0.5)
    both = server.messages(ALICE) + server.messages(BOB)
    assert sum(b"Subject: one" in m for m in both) == 2
    assert sum(b"Subject: two" in m for m in both) == 1  # one copy: no loop, nothing lost


def test_the_enabled_flag_and_bad_targets(mailmax_server) -> None:
    """A7, M4: disabling forwarding for the user keeps the mail local; a target that is not an
    address is refused by the CLI with what is allowed."""
    server: TestServer = mailmax_server(plugins=["forwarding"])
    server.cli(
        "plugin", "set", "forwarding", f"targets={BOB}", "keep_local_copy=false", "--user", ALICE
    )
    server.cli("plugin", "disable", "forwarding", "--user", ALICE)
    time.sleep(0.5)
    assert send(server, [ALICE], subject="kept") == {}
    server.wait_for_mail(ALICE)
    time.sleep(0.5)
    assert server.messages(BOB) == []
    shown = server.cli("plugin", "show", "forwarding", "--user", ALICE).stdout
    assert "disabled (from user alice@example.test)" in shown
    assert 'targets = ["bob@example.test"]    (user alice@example.test)' in shown
    bad = server.cli(
        "plugin", "set", "forwarding", "targets=not-an-address", "--user", ALICE, check=False
    )
    assert bad.returncode == 1
    assert "'not-an-address' is not an address like name@example.com" in bad.stderr
