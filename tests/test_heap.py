"""The server exempts its start-up objects from full garbage collections, once."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from mailmax.core import heap
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
