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


@lru_cache(maxsize=8192)
def compile_condition(condition: Condition) -> Test:
    """The test of ``condition`` (not a program), made once per condition."""
    kind = condition.kind
    if kind == "any":
        return lambda view, now: True
    if kind == "size":
        in_range = _compare(condition.op, condition.low, condition.high)
        return lambda view, now: in_range(view.size)
    if kind in _MOMENTS:
        moment, in_range = _MOMENTS[kind], _compare(condition.op, condition.low, condition.high)
        return lambda view, now: in_range(moment(now))
    negate = condition.negate
    if kind == "header":
        name = condition.name.lower()
        if condition.op == "exists":
            return lambda view, now: bool(view.header_index.get(name)) != negate
        found = _finder(condition.values[0], condition.word)
        return lambda view, now: any(map(found, view.lowered_header(name))) != negate
    if kind in ("body", "text"):
        found = _finder(condition.values[0], condition.word)
        if kind == "body":
            return lambda view, now: found(view.lowered_body) != negate
        return lambda view, now: found(view.lowered_text) != negate
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
