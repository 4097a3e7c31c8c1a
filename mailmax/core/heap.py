"""Keeping the garbage collector's full passes short in a long-running server process.

A full collection walks every tracked object of the process. Most of them were made at start-up
(modules, classes, configuration) and live as long as the process; after a session has made
and dropped many objects (a big FETCH, a POP3 download), the next full pass walks them all and
holds every thread for tens of milliseconds, often in the middle of the next command.
:func:`freeze_startup_objects` moves what exists once the server listens out of the
collector's sight, once per process; later objects are collected as before.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_startup_objects() -> bool:
    """Collect once, then exempt every object alive now from later collections (once per
    process); True when this call did it."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.collect()
    gc.freeze()
    return True
