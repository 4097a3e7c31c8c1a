"""A rule: a name, an enabled flag, conditions that must all hold and actions that are all done.

:func:`make_rule` checks everything an admin gives: a name, at least one condition and one
action, each line readable, programs on the system's allow-list, nothing the server cannot do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from mailmax.plugins.rules.conditions import Test, all_of, compile_condition
from mailmax.plugins.rules.syntax import (
    Action,
    Condition,
    RuleError,
    parse_action,
    parse_condition,
)

#: The lists rules live in, in the order they run.
SYSTEM, DOMAIN, USER = "system", "domain", "user"
SCOPES = (SYSTEM, DOMAIN, USER)
MAX_NAME = 100
MAX_LINES = 30
_NAME_BAD = re.compile(r"[|\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Rule:
    """One stored rule, parsed."""

    scope: str
    scope_value: str
    position: int
    name: str
    enabled: bool
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]

    @property
    def where(self) -> str:
        """``system``, ``domain example.com`` or ``user al@example.com``."""
        return self.scope if self.scope == SYSTEM else f"{self.scope} {self.scope_value}"

    @cached_property
    def runs_programs(self) -> bool:
        """Whether a condition is a program."""
        return any(c.kind == "program" for c in self.conditions)

    @cached_property
    def cheapest_first(self) -> tuple[Condition, ...]:
        """The conditions, those that read only the header first."""
        return tuple(sorted(self.conditions, key=lambda c: c.needs_body))

    @cached_property
    def test(self) -> Test:
        """Whether every condition holds, made ready to run (a rule without programs); the
        conditions are tested cheapest first."""
        return all_of([compile_condition(c) for c in self.cheapest_first if c.kind != "program"])

    @cached_property
    def needs_clock(self) -> bool:
        """Whether a condition tests the date, the time or the day of the week."""
        return any(c.kind in ("date", "time", "weekday") for c in self.conditions)

    @property
    def needs_body(self) -> bool:
        """Whether any condition reads beyond the header."""
        return any(c.needs_body for c in self.conditions)

    def record(self) -> dict[str, object]:
        """The rule as plain data (CLI ``--json``)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "scope_value": self.scope_value,
            "where": self.where,
            "position": self.position,
            "enabled": self.enabled,
            "conditions": [c.text() for c in self.conditions],
            "actions": [a.text() for a in self.actions],
        }


def check_name(name: str) -> str:
    """A rule name: required, at most :data:`MAX_NAME` characters, no ``|`` or control chars."""
    name = (name or "").strip()
    if not name:
        raise RuleError("a rule needs a name")
    if len(name) > MAX_NAME:
        raise RuleError(f"the rule name is longer than {MAX_NAME} characters")
    if _NAME_BAD.search(name):
        raise RuleError(f"the rule name {name!r} has a '|' or a control character")
    return name


def program_allowed(argv: Sequence[str], allowed: Iterable[str]) -> bool:
    """Whether the program ``argv[0]`` is one the system administrator allowed."""
    wanted = os.path.realpath(argv[0])
    return any(os.path.realpath(a) == wanted for a in allowed)


def check_programs(
    conditions: Sequence[Condition], actions: Sequence[Action], allowed: Sequence[str]
) -> None:
    """Refuse a program that is not on the allow-list, naming the list's setting."""
    argvs = [c.argv for c in conditions if c.kind == "program"]
    argvs += [a.values for a in actions if a.kind == "program"]
    for argv in argvs:
        if not program_allowed(argv, allowed):
            raise RuleError(
                f"program: {argv[0]} is not on the system's allow-list; a system administrator"
                " adds it to allowed_programs in [plugins.settings.rules] of the config file"
                f" (allowed now: {', '.join(allowed) or 'none'})"
            )


def reply_file(folder: str, name: str) -> str:
    """The path of the reply text ``name`` in the system's ``reply_folder``."""
    return os.path.join(folder, name)


def check_reply_files(actions: Sequence[Action], folder: str) -> None:
    """Refuse a ``respond-file`` whose file is not a text in the system's reply folder."""
    for action in actions:
        if action.kind != "respond-file":
            continue
        if not folder:
            raise RuleError(
                "respond-file: replies from files are off; a system administrator sets"
                " reply_folder in [plugins.settings.rules] of the config file (use 'respond"
                " TEXT' meanwhile)"
            )
        name = action.value
        if "/" in name or name.startswith(".") or not os.path.isfile(reply_file(folder, name)):
            raise RuleError(
                f"respond-file: {name!r} is not a file in the reply folder {folder}"
                " (give a file name, without a path)"
            )


def make_rule(
    scope: str,
    scope_value: str,
    name: str,
    conditions: Sequence[str],
    actions: Sequence[str],
    *,
    enabled: bool = True,
    position: int = 0,
    allowed_programs: Sequence[str] = (),
    reply_folder: str = "",
) -> Rule:
    """A checked :class:`Rule` from the lines an admin wrote; :class:`RuleError` otherwise."""
    if scope not in SCOPES:
        raise RuleError(f"{scope!r} is not a rule list; use system, domain or user")
    if not conditions:
        raise RuleError("a rule needs at least one condition ('any' matches every message)")
    if not actions:
        raise RuleError("a rule needs at least one action (e.g. 'folder Junk' or 'discard')")
    if len(conditions) > MAX_LINES or len(actions) > MAX_LINES:
        raise RuleError(f"a rule has at most {MAX_LINES} conditions and {MAX_LINES} actions")
    parsed_conditions = tuple(parse_condition(line) for line in conditions)
    parsed_actions = tuple(parse_action(line) for line in actions)
    check_reply_files(parsed_actions, reply_folder)
    check_programs(parsed_conditions, parsed_actions, allowed_programs)
    return Rule(
        scope,
        scope_value,
        position,
        check_name(name),
        enabled,
        parsed_conditions,
        parsed_actions,
    )


def load_rule(
    scope: str,
    scope_value: str,
    position: int,
    name: str,
    enabled: bool,
    conditions: Sequence[str],
    actions: Sequence[str],
) -> Rule:
    """A stored rule, parsed again (stored lines were checked when they were written)."""
    return Rule(
        scope,
        scope_value,
        position,
        name,
        enabled,
        tuple(parse_condition(line) for line in conditions),
        tuple(parse_action(line) for line in actions),
    )
