"""``mailmax rule test``: run a message file through the rules that would apply, change nothing.

It reads the same lists with the same code as the server (:func:`.engine.evaluate`); test
programs run as they would in the server (in a temporary folder, always removed), since what
they decide is part of the answer; actions are only described.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from mailmax.plugins.rules import changes
from mailmax.plugins.rules.engine import Plan, evaluate
from mailmax.plugins.rules.message import MessageView
from mailmax.plugins.rules.model import Rule, program_allowed
from mailmax.plugins.rules.programs import run_here


async def dry_run(
    rules: list[Rule],
    data: bytes,
    now: datetime.datetime,
    config: Any,
    scratch: Path,
    notes: list[str],
) -> Plan:
    """The plan the server would make for ``data`` at ``now``; program runs are added to
    ``notes``."""
    view = MessageView(changes.without_trace(data))

    async def program_test(argv: tuple[str, ...], message: MessageView) -> bool:
        if not program_allowed(argv, config.allowed_programs):
            notes.append(f"program {argv[0]} is not on allowed_programs: the condition fails")
            return False
        removed, what = run_here(scratch, argv, message, config.program_timeout)
        notes.append(f"program {argv[0]} {what} (removed a file: {'yes' if removed else 'no'})")
        return removed

    return await evaluate(rules, view, now, program_test)
