"""Running rule lists over one message: which rules match and what is to be done.

The same code serves the server's deliveries and ``mailmax rule test``, so a dry run tells what
the server then does. A rule's conditions are tested cheapest first (header, size, date and
time; then those that read the body; programs last) and stop at the first that fails, so the
body is read and a program runs only when everything cheaper holds.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mailmax.plugins.rules.conditions import holds
from mailmax.plugins.rules.message import MessageView
from mailmax.plugins.rules.model import Rule
from mailmax.plugins.rules.syntax import Action, Condition

#: Runs a program condition: ``(argv, message) -> awaitable of True/False``.
ProgramTest = Callable[[tuple[str, ...], MessageView], Awaitable[bool]]


@dataclass
class Plan:
    """What the matched rules ask for one recipient's copy."""

    matched: list[str] = field(default_factory=list)
    folder: str = ""
    discard: bool = False
    strip_attachments: bool = False
    forwards: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    programs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    #: Automatic replies: (rule, ``respond`` or ``respond-file``, the text or file name).
    replies: list[tuple[str, str, str]] = field(default_factory=list)
    terminated_by: str = ""

    @property
    def changes_delivery(self) -> bool:
        """Whether the copy goes anywhere but unchanged into the INBOX."""
        return self.discard or self.strip_attachments or self.folder not in ("", "INBOX")

    def lines(self) -> list[str]:
        """What would be done, one line each (the dry run's answer)."""
        out = [f"matched: {name}" for name in self.matched] or ["no rule matched"]
        if self.discard:
            out.append("discard: nothing is stored")
        else:
            out.append(f"store in: {self.folder or 'INBOX'}")
        if self.strip_attachments:
            out.append("attachments: replaced by a short note")
        out += [f"forward to: {address}" for address in self.forwards]
        out += [f"note to self ({rule}): {text}" for rule, text in self.notes]
        out += [f"run ({rule}): {' '.join(argv)}" for rule, argv in self.programs]
        out += [
            f"auto-respond ({rule}): {'file ' if kind == 'respond-file' else ''}{value}"
            for rule, kind, value in self.replies
        ]
        if self.terminated_by:
            out.append(f"terminated by: {self.terminated_by}")
        return out

    def record(self) -> dict[str, object]:
        """The plan as plain data (``--json``)."""
        return {
            "matched": self.matched,
            "folder": "" if self.discard else self.folder or "INBOX",
            "discard": self.discard,
            "discard_attachments": self.strip_attachments,
            "forward": self.forwards,
            "notes": [text for _, text in self.notes],
            "programs": [list(argv) for _, argv in self.programs],
            "replies": [{"kind": kind, "value": value} for _, kind, value in self.replies],
            "terminated_by": self.terminated_by,
        }


def _cost(condition: Condition) -> int:
    if condition.kind == "program":
        return 2
    return 1 if condition.needs_body else 0


async def matches(
    rule: Rule, view: MessageView, now: datetime.datetime | None, program_test: ProgramTest
) -> bool:
    """Whether every condition of ``rule`` holds."""
    ordered = sorted(rule.conditions, key=_cost)
    for condition in ordered:
        if condition.kind == "program":
            if not await program_test(condition.argv, view):
                return False
        elif not holds(condition, view, now):
            return False
    return True


def _apply(plan: Plan, label: str, actions: Sequence[Action]) -> bool:
    """Add a matched rule's actions to ``plan``; True when the rule terminates."""
    for action in actions:
        if action.kind == "folder":
            plan.folder = action.value
        elif action.kind == "discard":
            plan.discard = True
        elif action.kind == "discard-attachments":
            plan.strip_attachments = True
        elif action.kind == "forward":
            plan.forwards += [a for a in action.values if a not in plan.forwards]
        elif action.kind == "note":
            plan.notes.append((label, action.value))
        elif action.kind == "program":
            plan.programs.append((label, action.values))
        elif action.kind in ("respond", "respond-file"):
            plan.replies.append((label, action.kind, action.value))
    return any(action.kind == "terminate" for action in actions)


@dataclass(frozen=True)
class RuleList:
    """Rules in the order they run (system, domain, user), with what the whole list needs
    worked out once: a list is kept for a few seconds and runs over every message meanwhile."""

    rules: tuple[Rule, ...]
    #: Whether a rule tests the date, the time or the day of the week.
    needs_clock: bool
    #: Whether a rule has a program condition (the list is then run asynchronously).
    runs_programs: bool

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> RuleList:
        """The enabled ones of ``rules``, ready to run."""
        kept = tuple(rule for rule in rules if rule.enabled)
        return cls(
            kept,
            any(rule.needs_clock for rule in kept),
            any(rule.runs_programs for rule in kept),
        )


def _matched(plan: Plan, rule: Rule) -> bool:
    """Add ``rule``'s actions to ``plan``; True when the rule terminates the lists."""
    label = f"{rule.where}: {rule.name}"
    plan.matched.append(label)
    if _apply(plan, label, rule.actions):
        plan.terminated_by = label
        return True
    return False


def evaluate_now(rules: RuleList, view: MessageView, now: datetime.datetime | None) -> Plan:
    """:func:`evaluate` for a list without program conditions, which needs no waiting."""
    if rules.runs_programs:
        raise ValueError("a rule list with program conditions is run with evaluate()")
    plan = Plan()
    for rule in rules.rules:
        if rule.test(view, now) and _matched(plan, rule):
            break
    return plan


async def evaluate(
    rules: Sequence[Rule] | RuleList,
    view: MessageView,
    now: datetime.datetime | None,
    program_test: ProgramTest,
) -> Plan:
    """Run ``rules`` (already in system, domain, user order) over ``view`` at ``now`` (local
    time; None only when no rule tests the date, the time or the day of the week)."""
    if not isinstance(rules, RuleList):
        rules = RuleList.of(rules)
    if not rules.runs_programs:
        return evaluate_now(rules, view, now)
    plan = Plan()
    for rule in rules.rules:
        if rule.runs_programs:
            if not await matches(rule, view, now, program_test):
                continue
        elif not rule.test(view, now):
            continue
        if _matched(plan, rule):
            break
    return plan
