"""The auto-responder (A8): RFC 3834 rules, the reply, the once-per-N-days memory, over SMTP."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from twisted.internet import defer, task

from mailmax.plugins.autoreply import Settings
from mailmax.plugins.autoreply.reply import (
    AutoReply,
    ReplyMemory,
    build_reply,
    read_headers,
    reason_not_to_reply,
)
from mailmax.testing import PluginHarness, TestServer, start_server

ALICE, BOB = "alice@example.test", "bob@example.test"
DAY = 86400


def headers(text: str) -> email.message.Message:
    return read_headers(text.replace("\n", "\r\n").encode() + b"\r\nbody\r\n")


PLAIN = "From: joe@sender.test\nTo: Alice <alice@example.test>\nSubject: hi\nMessage-ID: <m1@x>\n"


@pytest.mark.parametrize(
    ("sender", "extra", "why"),
    [
        ("joe@sender.test", "", ""),
        ("", "", "null sender"),
        ("ALICE@example.test", "", "own address"),
        ("owner-list@lists.test", "", "mailing list's address"),
        ("list-request@lists.test", "", "mailing list's address"),
        ("MAILER-DAEMON@sender.test", "", "mailer daemon"),
        ("joe@sender.test", "List-Id: <l.lists.test>\n", "mailing list"),
        ("joe@sender.test", "List-Unsubscribe: <mailto:u@l.test>\n", "mailing list"),
        ("joe@sender.test", "Precedence: Bulk\n", "bulk or list"),
        ("joe@sender.test", "Precedence: junk\n", "bulk or list"),
        ("joe@sender.test", "Auto-Submitted: auto-replied\n", "automatic"),
        ("joe@sender.test", "Auto-Submitted: auto-generated; x=y\n", "automatic"),
        ("joe@sender.test", "Auto-Submitted: no\n", ""),
    ],
)
def test_rfc3834_rules(sender: str, extra: str, why: str) -> None:
    """A8: who and what never gets an answer; anything else does."""
    reason = reason_not_to_reply(headers(PLAIN + extra), sender, ALICE)
    assert (why in reason and reason) if why else reason == ""


def test_only_mail_addressed_to_the_user_directly() -> None:
    """A8: the user (or one of the addresses the mail came through) must be in To/Cc/Bcc."""
    bcc = "From: j@s.test\nTo: list@other.test\nSubject: x\n"
    assert "not addressed directly" in reason_not_to_reply(headers(bcc), "j@s.test", ALICE)
    cc = bcc + "Cc: someone@x.test, ALICE@Example.test\n"
    assert reason_not_to_reply(headers(cc), "j@s.test", ALICE) == ""
    alias = "From: j@s.test\nTo: sales@example.test\n"
    assert reason_not_to_reply(headers(alias), "j@s.test", ALICE, ["sales@example.test"]) == ""


def test_the_reply_message() -> None:
    """A8: from the user (or the from address and name given), Auto-Submitted, threading
    headers, the subject decoded from RFC 2047 for the "Auto:" default."""
    incoming = headers(
        "From: joe@sender.test\nTo: alice@example.test\n"
        "Subject: =?utf-8?q?caf=C3=A9?=\nMessage-ID: <m2@x>\nReferences: <m0@x> <m1@x>\n"
    )
    reply = build_reply(incoming, "joe@sender.test", ALICE, AutoReply(text="Away.\nBack soon."))
    parsed = email.message_from_bytes(reply.as_bytes(), policy=email.policy.default)
    assert parsed["From"] == ALICE and parsed["To"] == "joe@sender.test"
    assert parsed["Subject"] == "Auto: café"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<m2@x>"
    assert parsed["References"] == "<m0@x> <m1@x> <m2@x>"
    assert parsed.get_content().splitlines() == ["Away.", "Back soon."]
    named = AutoReply(subject="Out", text="t", from_address="desk@example.test", real_name="Desk")
    reply = build_reply(incoming, "joe@sender.test", ALICE, named)
    assert reply["From"] == "Desk <desk@example.test>" and reply["Subject"] == "Out"


def test_the_text_may_come_from_a_file(tmp_path: Path) -> None:
    """A8: a reply text kept in a file is read when the reply is made."""
    path = tmp_path / "away.txt"
    path.write_text("From a file.\n")
    reply = build_reply(headers(PLAIN), "joe@sender.test", ALICE, AutoReply(text_file=str(path)))
    assert reply.get_content() == "From a file.\n"


@pytest.mark.parametrize("field", ["subject", "real_name", "from_address"])
def test_line_breaks_are_refused_everywhere(field: str) -> None:
    """A8: no header injection: a line break in any header field is refused, saying where."""
    with pytest.raises(ValueError, match="one line"):
        AutoReply(**{field: "x@example.test\r\nBcc: victim@x.test"})
    with pytest.raises(ValueError, match="one line"):
        Settings(**{field: "x@example.test\nBcc: victim@x.test"})


def test_settings_are_checked() -> None:
    """A8: dates are YYYY-MM-DD and in order; the responder answers within them only."""
    import datetime

    with pytest.raises(ValueError, match="not a date like 2026-12-24"):
        Settings(start_date="24.12.2026")
    with pytest.raises(ValueError, match="before start_date"):
        Settings(start_date="2026-12-24", end_date="2026-12-01")
    with pytest.raises(ValueError, match="not an address"):
        Settings(from_address="nobody")
    on = Settings(active=True, text="away", start_date="2026-12-24", end_date="2026-12-31")
    assert not on.answers_on(datetime.date(2026, 12, 23))
    assert on.answers_on(datetime.date(2026, 12, 24)) and on.answers_on(datetime.date(2026, 12, 31))
    assert not on.answers_on(datetime.date(2027, 1, 1))
    assert not Settings(text="away").answers_on(datetime.date(2026, 12, 24))


def test_each_sender_is_answered_once_per_n_days(tmp_path: Path) -> None:
    """A8: the memory per (user, sender) is in the directory database, expires after the
    reply's days on the server's clock, and is kept apart per scope."""
    clock = task.Clock()
    clock.advance(1_800_000_000)
    url = f"sqlite:///{tmp_path / 'mailmax.db'}"
    harness = PluginHarness("autoreply", data_dir=tmp_path, database_url=url, clock=clock)
    try:
        memory = ReplyMemory(harness.host)
        claim = lambda sender, scope="": harness.result(  # noqa: E731
            defer.ensureDeferred(memory.claim(ALICE, sender, 7, scope))
        )
        assert claim("joe@sender.test")
        assert not claim("JOE@sender.test")
        assert claim("ann@sender.test") and claim("joe@sender.test", scope="rule-1")
        clock.advance(7 * DAY - 1)
        assert not claim("joe@sender.test")
        clock.advance(1)
        assert claim("joe@sender.test")
    finally:
        harness.close()


# ---------------------------------------------------------------------- over real SMTP
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("autoreply"), plugins=["autoreply"])
    yield server
    server.stop(timeout=15)


def _send(server: TestServer, sender: str, to: str, subject: str, extra: str = "") -> None:
    body = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t>\r\n"
    with server.smtp() as client:
        assert client.sendmail(sender, [to], f"{body}{extra}\r\nhello\r\n") == {}


def _logged(server: TestServer, text: str) -> str:
    return server.wait_for(
        lambda: next((x for x in server.log_text().splitlines() if text in x), ""), what=text
    )


def test_replies_once_per_sender_never_to_lists_and_across_restarts(server: TestServer) -> None:
    """A8: the first message from a sender gets one reply (from <>, Auto-Submitted,
    In-Reply-To); a second does not, nor does a list message, nor a message after a restart."""
    server.cli(
        "autoreply", "set", ALICE, "--subject", "Away", "--text", "Back on Monday.",
        "--name", "Alice A",
    )  # fmt: skip
    assert server.reload().returncode == 0
    _send(server, BOB, ALICE, "first")
    (reply,) = server.wait_for_mail(BOB)
    parsed = email.message_from_bytes(reply, policy=email.policy.default)
    assert parsed["Return-Path"] == "<>"
    assert parsed["From"] == "Alice A <alice@example.test>" and parsed["Subject"] == "Away"
    assert parsed["Auto-Submitted"] == "auto-replied" and parsed["In-Reply-To"] == "<first@t>"
    assert "Back on Monday." in parsed.get_body().get_content()

    _send(server, BOB, ALICE, "second")
    _logged(server, "answered in the last 7 day(s)")
    _send(server, "postmaster@example.test", ALICE, "list", "List-Id: <x.lists.test>\r\n")
    _logged(server, "comes from a mailing list")
    server.stop()
    server.start()
    _send(server, BOB, ALICE, "third")
    server.wait_for_mail(ALICE, count=4)
    assert len(server.messages(BOB)) == 1
    assert server.messages("postmaster@example.test") == []


def test_the_cli_sets_shows_refuses_and_switches_off(server: TestServer, tmp_path: Path) -> None:
    """A8: `mailmax autoreply` refuses a line break, a bad date and a switched-off plugin,
    saying why and changing nothing; `show --json` and `off`."""
    bad = server.cli("autoreply", "set", BOB, "--subject", "a\nBcc: x@y.test", check=False)
    assert bad.returncode == 1 and "subject must be one line" in bad.stderr
    bad = server.cli("autoreply", "set", BOB, "--text", "t", "--end", "31.12.2026", check=False)
    assert bad.returncode == 1 and "not a date like 2026-12-24" in bad.stderr
    empty = server.cli("autoreply", "set", BOB, "--days", "3", check=False)
    assert empty.returncode == 1 and "needs something to say" in empty.stderr
    text = tmp_path / "away.txt"
    text.write_text("Gone fishing.\n")
    server.cli("autoreply", "set", BOB, "--text-file", str(text), "--start", "2026-12-24")
    shown = json.loads(server.cli("autoreply", "show", BOB, "--json").stdout)
    assert shown["answering"] and shown["settings"]["text"] == "Gone fishing.\n"
    assert shown["settings"]["start_date"] == "2026-12-24"
    server.cli("autoreply", "off", BOB)
    assert "bob@example.test: off" in server.cli("autoreply", "show", BOB).stdout
    server.cli("plugin", "disable", "autoreply", "--user", BOB)
    off = server.cli("autoreply", "set", BOB, "--text", "x", check=False)
    assert off.returncode == 1 and "switched off for bob@example.test" in off.stderr
    assert "nothing was changed" in off.stderr
