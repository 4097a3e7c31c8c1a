"""Testing one condition against a message: each condition made into a small function once.

A rule list is kept for a few seconds and runs over every message that arrives meanwhile, so
what a condition needs beyond the message (its text in lower case, its comparison, its
pattern) is worked out once per condition, not once per message.
"""

from __future__ import annotations

import datetime
import fnmatch
import operator
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from mailmax.plugins.rules.message import MessageView
from mailmax.plugins.rules.syntax import Condition

#: A condition made ready to run: ``(message, local time) -> whether it holds``; the time is
#: None when no condition of the rules that run tests it.
Test = Callable[[MessageView, datetime.datetime | None], bool]

#: The comparisons of size, date, time and weekday conditions (``between`` apart).
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "on": operator.eq,
    "=": operator.eq,
    "not-on": operator.ne,
    "!=": operator.ne,
    "on-or-before": operator.le,
    "<=": operator.le,
    "before": operator.lt,
    "<": operator.lt,
    "on-or-after": operator.ge,
    ">=": operator.ge,
    "after": operator.gt,
    ">": operator.gt,
}


def weekday(moment: datetime.datetime) -> int:
    """The day of the week of ``moment``: 1 (Sunday) to 7 (Saturday)."""
    return moment.isoweekday() % 7 + 1


def _minute(moment: datetime.datetime) -> datetime.time:
    return moment.time().replace(second=0, microsecond=0)


_MOMENTS: dict[str, Callable[[Any], object]] = {
    "date": datetime.datetime.date,
    "time": _minute,
    "weekday": weekday,
}


def _compare(op: str, low: object, high: object) -> Callable[[object], bool]:
    """``value -> bool`` for the comparison ``op`` with the condition's bounds."""
    if op == "between":
        return lambda value: low <= value <= high  # type: ignore[operator]
    compare = _COMPARISONS[op]
    return lambda value: compare(value, low)


def _finder(text: str, word: bool) -> Callable[[str], bool]:
    """``lowered haystack -> bool``: whether ``text`` is in it (as a whole word when ``word``);
    a plain look-up first, the whole-word regex only where the text is."""
    needle = text.lower()
    if not word:
        return lambda haystack: needle in haystack
    pattern = re.compile(rf"(?<!\w){re.escape(text)}(?!\w)", re.IGNORECASE)
    return lambda haystack: needle in haystack and pattern.search(haystack) is not None


def _type_matches(types: Sequence[str], content_type: str, filename: str) -> bool:
    name = filename.lower()
    for wanted in types:
        if wanted.startswith("."):
            if name.endswith(wanted):
                return True
        elif fnmatch.fnmatchcase(content_type.lower(), wanted):
            return True
    return False


def _size_test(op: str, low: Any, high: Any) -> Test:
    """The size comparison as one small function (each message runs every size rule)."""
    if op == "between":
        return lambda view, now: low <= view.size <= high
    compare = _COMPARISONS.get(op)
    if compare is not None:
        return lambda view, now: compare(view.size, low)
    raise ValueError(f"no comparison {op!r}")


def _text_test(
    haystack: Callable[[MessageView], str | None], text: str, word: bool, negate: bool
) -> Test:
    """Whether ``text`` is in the lowered text ``haystack(view)`` (None: there is none, the
    condition then holds only negated), as a whole word when ``word``; a plain look-up
    first, the whole-word regex only where the text is."""
    needle = text.lower()
    if not word:

        def contains(view: MessageView, now: datetime.datetime | None) -> bool:
            found = haystack(view)
            return (found is not None and needle in found) != negate

        return contains
    search = re.compile(rf"(?<!\w){re.escape(text)}(?!\w)", re.IGNORECASE).search

    def contains_word(view: MessageView, now: datetime.datetime | None) -> bool:
        found = haystack(view)
        return (found is not None and needle in found and search(found) is not None) != negate

    return contains_word


def _header_test(condition: Condition) -> Test:
    name = condition.name.lower()
    negate = condition.negate
    if condition.op == "exists":
        return lambda view, now: (name in view.header_names) != negate
    text = condition.values[0]
    if text and "\n" not in text:
        # the field's values joined by line breaks: the text is found in one of them
        return _text_test(lambda view: view.lowered_field(name), text, condition.word, negate)
    found = _finder(text, condition.word)
    return lambda view, now: any(map(found, view.lowered_header(name))) != negate


@lru_cache(maxsize=8192)
def compile_condition(condition: Condition) -> Test:
    """The test of ``condition`` (not a program), made once per condition."""
    kind = condition.kind
    if kind == "any":
        return lambda view, now: True
    if kind == "size":
        return _size_test(condition.op, condition.low, condition.high)
    if kind in _MOMENTS:
        moment, in_range = _MOMENTS[kind], _compare(condition.op, condition.low, condition.high)
        return lambda view, now: in_range(moment(now))
    if kind == "header":
        return _header_test(condition)
    if kind == "body":
        lowered_body = operator.attrgetter("lowered_body")
        return _text_test(lowered_body, condition.values[0], condition.word, condition.negate)
    if kind == "text":
        lowered_text = operator.attrgetter("lowered_text")
        return _text_test(lowered_text, condition.values[0], condition.word, condition.negate)
    if kind == "attachment-name":
        pattern = condition.values[0].lower()
        return lambda view, now: any(
            fnmatch.fnmatchcase(a.filename.lower(), pattern) for a in view.attachments
        )
    if kind == "attachment-type":
        types = condition.values
        return lambda view, now: any(
            _type_matches(types, a.content_type, a.filename) for a in view.attachments
        )
    raise ValueError(f"no test for {kind!r}")


def all_of(tests: Sequence[Test]) -> Test:
    """One test that holds when each of ``tests`` does, tried in order up to the first that
    fails."""
    if len(tests) == 1:
        return tests[0]
    chain = tuple(tests)

    def every(view: MessageView, now: datetime.datetime | None) -> bool:
        return all(test(view, now) for test in chain)

    return every


def holds(condition: Condition, view: MessageView, now: datetime.datetime | None) -> bool:
    """Whether ``condition`` (not a program) holds for ``view`` at ``now`` (local time)."""
    return compile_condition(condition)(view, now)
