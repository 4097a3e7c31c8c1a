"""A timing trace of the acceptance path, for benchmarks and debugging; off by default.

When the environment variable ``MAILMAX_SPOOL_TRACE`` names a file when the server starts, the
SMTP server, the spool and the spool writer process append one JSON object per line to it: the
stages one message goes through from the end of its DATA to its 250 reply, as
``time.monotonic()`` seconds (one clock for every process of the machine). The writer process
inherits the variable. ``bench/spool_trace.py`` turns the file into per-stage latencies.

Records:

- ``{"p": "smtp", "id": ..., "dot": t, "accept": t, "reply": t}``: the end of the message was
  read, the spool was asked to accept it, the 250 reply was written (server process);
- ``{"p": "spool", "id": ..., "answer": t}``: the writer's answer reached the server;
- ``{"p": "writer", "ids": [...], "read": [t...], "written": [t...], "sync1": [start, end],
  "renamed": t, "sync2": [start, end], "sent": t}``: one batch in the writer process with
  ``sync="filesystem"`` (sync1 made its files durable, sync2 its renames).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

#: The environment variable naming the trace file.
TRACE_VARIABLE = "MAILMAX_SPOOL_TRACE"

now = time.monotonic


class StageTrace:
    """Appends timing records to the trace file (thread-safe, one line per record)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="ascii")  # noqa: SIM115
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> None:
        """Append one record."""
        line = json.dumps(fields, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")


def open_trace() -> StageTrace | None:
    """The trace the environment asks for, or None (the default: no trace)."""
    path = os.environ.get(TRACE_VARIABLE)
    return StageTrace(path) if path else None


#: This process's trace (None unless asked for when the module was first imported).
TRACE = open_trace()
