"""The IMAP server exempts its start-up objects from full garbage collections, once."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from mailmax.core.imap import heap
first = heap.freeze_startup_objects()
frozen = gc.get_freeze_count()
second = heap.freeze_startup_objects()
print(first, second, frozen > 0, gc.get_freeze_count() == frozen)
"""


def test_startup_objects_are_frozen_once() -> None:
    """Run in a process of its own: freezing is for the whole process."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["True", "False", "True", "True"]


def test_listening_factory_freezes() -> None:
    """IMAPFactory.startFactory (the listener starts) does it."""
    script = (
        "import gc\n"
        "from mailmax.core.imap.server import IMAPFactory\n"
        "IMAPFactory.startFactory(object.__new__(IMAPFactory))\n"
        "print(gc.get_freeze_count() > 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
