"""R2: each condition, made ready once per rule list, answers as the rule line says; the
recipients of one message share one parsed view of it."""

from __future__ import annotations

import datetime

import pytest

from mailmax.plugins.rules.conditions import holds
from mailmax.plugins.rules.engine import RuleList, evaluate_now
from mailmax.plugins.rules.message import MessageView, RecentMessages
from mailmax.plugins.rules.model import make_rule
from mailmax.plugins.rules.syntax import parse_condition
from mailmax.plugins.rules.tests.support import message

#: A Wednesday afternoon.
NOW = datetime.datetime(2027, 3, 10, 14, 30, 15)

PLAIN = (
    b"Received: from a.test by b.test\r\n"
    b"Received: from c.test by d.test\r\n"
    b"Subject: =?utf-8?q?Ihre_Rechnung_f=C3=BCr_M=C3=A4rz?=\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"x-list: one\r\n"
    b"X-List: Two words\r\n"
    b"\r\n"
    b"Dear customer, the Invoices are attached.\r\nRegards\r\n"
)
WITH_FILE = message(
    "report",
    "see the attached file",
    attachments=[("Q1-Report.PDF", "application/pdf", b"%PDF-1.4 secret handshake")],
)

CASES = [
    ("any", PLAIN, True),
    ("header X-Spam-Flag exists", PLAIN, True),
    ("header x-spam-flag exists", PLAIN, True),
    ("header X-Other exists", PLAIN, False),
    ("header X-Other not exists", PLAIN, True),
    ("header Subject contains rechnung", PLAIN, True),
    ("header Subject contains word märz", PLAIN, True),
    ("header Subject contains word rech", PLAIN, False),
    ("header Subject not contains rechnung", PLAIN, False),
    ("header X-List contains word two", PLAIN, True),
    ("header X-List contains ONE", PLAIN, True),
    ("header Received contains d.test", PLAIN, True),
    ('header X-List contains word "one two"', PLAIN, False),
    ("header X-Other contains one", PLAIN, False),
    ("header X-Other not contains one", PLAIN, True),
    ("body contains invoices", PLAIN, True),
    ("body contains word invoice", PLAIN, False),
    ("body contains word INVOICES", PLAIN, True),
    ("body not contains regards", PLAIN, False),
    ("body contains rechnung", PLAIN, False),
    ("text contains rechnung", PLAIN, True),
    ("text contains word spam-flag", PLAIN, True),
    ("text not contains nowhere", PLAIN, True),
    (f"size = {len(PLAIN)}", PLAIN, True),
    (f"size != {len(PLAIN)}", PLAIN, False),
    ("size < 1k", PLAIN, True),
    ("size >= 1k", PLAIN, False),
    (f"size between {len(PLAIN)} {len(PLAIN) + 1}", PLAIN, True),
    (f"size between {len(PLAIN) + 1} 1m", PLAIN, False),
    ("date on 2027-03-10", PLAIN, True),
    ("date before 2027-03-10", PLAIN, False),
    ("date between 2027-03-01 2027-03-31", PLAIN, True),
    ("weekday on 4", PLAIN, True),
    ("weekday not-on 4", PLAIN, False),
    ("time on 14:30", PLAIN, True),
    ("time after 14:30", PLAIN, False),
    ("time on-or-after 14:30", PLAIN, True),
    ("time between 09:00 17:00", PLAIN, True),
    ('attachment-name "*.pdf"', WITH_FILE, True),
    ('attachment-name "*.zip"', WITH_FILE, False),
    ("attachment-type application/*", WITH_FILE, True),
    ("attachment-type .docx,.pdf", WITH_FILE, True),
    ("attachment-type image/png", WITH_FILE, False),
    ("body contains handshake", WITH_FILE, False),
    ("body contains attached", WITH_FILE, True),
]


@pytest.mark.parametrize(
    ("line", "data", "expected"),
    CASES,
    ids=[f"{number}: {line}" for number, (line, _, _) in enumerate(CASES)],
)
def test_each_condition_answers_as_written(line: str, data: bytes, expected: bool) -> None:
    """R2: the condition holds exactly when its line says so, on a fresh view and on a view
    other conditions have read before."""
    condition = parse_condition(line)
    assert holds(condition, MessageView(data), NOW) is expected
    used = MessageView(data)
    for other, _, _ in CASES:
        if not other.startswith("attachment"):
            holds(parse_condition(other), used, NOW)
    assert holds(condition, used, NOW) is expected


def test_a_rule_holds_only_when_every_condition_does() -> None:
    """R2: all conditions of a rule must hold, whatever their order."""

    def rule(*conditions: str) -> bool:
        made = make_rule("system", "", "r", list(conditions), ["folder X"])
        return made.test(MessageView(PLAIN), NOW)

    assert rule("header X-Spam-Flag exists", "size < 1k", "body contains regards")
    assert not rule("body contains regards", "header X-Other exists")
    assert not rule("size > 1k", "body contains regards")


def test_recent_messages_keep_a_few_small_views() -> None:
    """A message's recipients share one view; only a few small messages are kept."""
    recent = RecentMessages(size=2, max_bytes=100)
    views = [MessageView(b"Subject: x\r\n\r\nbody") for _ in range(3)]
    for number, view in enumerate(views):
        recent.keep((f"/q/{number}", 20, 1), view)
    assert recent.get(("/q/0", 20, 1)) is None  # the oldest went
    assert recent.get(("/q/1", 20, 1)) is views[1]
    assert recent.get(("/q/2", 20, 2)) is None  # the file changed
    recent.keep(("/q/big", 101, 1), views[0])
    assert recent.get(("/q/big", 101, 1)) is None


def test_lists_without_header_conditions_never_parse_the_message() -> None:
    """Size, date and "any" rules, and the look for the rules' own note field, leave the
    message unparsed; the first header condition parses the header block, never the body."""
    rules = RuleList.of(
        [
            make_rule("system", "", "big", ["size > 1m"], ["folder Big"]),
            make_rule("system", "", "old", ["date before 2000-01-01"], ["discard"]),
            make_rule("user", "u", "all", ["any"], ["folder All"]),
        ]
    )
    view = MessageView(PLAIN)
    assert not view.may_have_field("X-MailMax-Rule-Note")
    plan = evaluate_now(rules, view, NOW)
    assert plan.matched == ["user u: all"] and plan.folder == "All"
    assert "header" not in vars(view) and not view.body_read
    header_rule = make_rule("system", "", "spam", ["header X-Spam-Flag exists"], ["discard"])
    assert evaluate_now(RuleList.of([header_rule]), view, NOW).discard
    assert "header" in vars(view) and not view.body_read


@pytest.mark.parametrize(
    "head",
    [
        b"X-MailMax-Rule-Note: 1\r\n",
        b"x-mailmax-rule-note:1\r\n",
        b"Subject: a\rX-MailMax-Rule-Note: 1\r\n",
        b"Subject: a\r\n\tfolded\r\nX-MAILMAX-RULE-NOTE: 1\n",
    ],
)
def test_a_field_the_parser_finds_is_always_seen_before_parsing(head: bytes) -> None:
    """The look for a field without parsing never misses one the header parser finds."""
    view = MessageView(b"From: a@b.test\r\n" + head + b"\r\nbody\r\n")
    assert "x-mailmax-rule-note" in view.header_names
    assert view.may_have_field("X-MailMax-Rule-Note")


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: a\r\n\r\nX-MailMax-Rule-Note: only in the body\r\n",
        b"X-MailMax-Rule-Notes: another field\r\n\r\nbody\r\n",
        b"Subject: X-MailMax-Rule-Note: in a value\r\n\r\nbody\r\n",
    ],
)
def test_a_field_only_named_elsewhere_is_not_there(data: bytes) -> None:
    """Body text, a longer field name or a value that names the field are not the field."""
    view = MessageView(data)
    assert not view.may_have_field("X-MailMax-Rule-Note")
    assert "x-mailmax-rule-note" not in view.header_names
