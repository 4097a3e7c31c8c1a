"""Event log files with rotation: never, by size, hourly, daily, weekly or monthly, keeping
a number of old files (``smtp.log.1`` is the newest old one).

:class:`RotatingLogFile` is Twisted's size-rotating :class:`~twisted.python.logfile.LogFile`
with one more reason to rotate: the start of a new period, read from an injectable clock.
:class:`EventLog` subscribes one file to the event bus and writes one line per event, as text
or as JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.python.logfile import LogFile

from mailmax.core.logfile import TIME_FORMAT
from mailmax.core.observe.events import Event, EventBus, EventFilter

#: Rotation -> the strftime format of the period a line belongs to (a new period rotates).
PERIODS = {
    "hourly": "%Y-%m-%d %H",
    "daily": "%Y-%m-%d",
    "weekly": "%G-%V",
    "monthly": "%Y-%m",
}
ROTATIONS = ("never", "size", *PERIODS)


class RotatingLogFile(LogFile):
    """A log file that rotates by size (``rotation="size"``), at the start of each period
    (``hourly``, ``daily``, ``weekly``, ``monthly``, in local time) or never, keeping ``keep``
    old files."""

    def __init__(
        self,
        path: Path,
        rotation: str = "never",
        max_bytes: int = 10_000_000,
        keep: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation {rotation!r}: use one of {', '.join(ROTATIONS)}")
        if keep < 1:
            raise ValueError(f"keep {keep}: keep at least 1 old file")
        self.rotation = rotation
        self.clock = clock
        self._period = PERIODS.get(rotation)
        self.period = ""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(
            path.name,
            str(path.parent),
            rotateLength=max_bytes if rotation == "size" else None,
            defaultMode=0o640,
            maxRotatedFiles=keep,
        )

    def _openFile(self) -> None:
        super()._openFile()
        if self._period is not None:
            # a file left by an earlier run belongs to the period it was last written in
            self.period = self._key(os.stat(self.path).st_mtime if self.size else self.clock())

    def _key(self, when: float) -> str:
        assert self._period is not None
        return time.strftime(self._period, time.localtime(when))

    def shouldRotate(self) -> bool:
        """True when the file is over its size, or a new period has begun."""
        if self._period is None:
            return bool(super().shouldRotate())
        return self.size > 0 and self._key(self.clock()) != self.period

    def rotate(self) -> None:
        """Rename the file to ``.1`` (older ones move up, beyond ``keep`` are removed)."""
        super().rotate()
        if self._period is not None:
            self.period = self._key(self.clock())


class EventLog:
    """Writes the events ``event_filter`` takes to ``log_file``, one line each."""

    def __init__(self, log_file: RotatingLogFile, json_lines: bool = False) -> None:
        self.file = log_file
        self.json_lines = json_lines
        self._handles: list[int] = []
        self._second = -1
        self._stamp = ""

    def attach(self, bus: EventBus, event_filter: EventFilter) -> None:
        """Start writing the events of ``event_filter``."""
        self._handles.append(bus.subscribe(event_filter, self.write))

    def detach(self, bus: EventBus) -> None:
        """Stop writing and close the file."""
        for handle in self._handles:
            bus.unsubscribe(handle)
        self._handles.clear()
        self.file.close()

    def write(self, event: Event) -> None:
        """Append ``event``."""
        self.file.write(self.format(event) + "\n")

    def format(self, event: Event) -> str:
        """``event`` as one line (JSON, or ``<time> [<service>#<category>] <session> <text>``)."""
        if self.json_lines:
            return json.dumps(event.as_dict(), ensure_ascii=False)
        second = int(event.time)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(TIME_FORMAT, time.localtime(second))
        text = event.text.replace("\n", "\n\t")
        where = f" {event.session}" if event.session else ""
        return f"{self._stamp} [{event.service}#{event.category}]{where} {text}"


def open_logs(
    settings: Any, bus: EventBus, clock: Callable[[], float] = time.time
) -> list[EventLog]:
    """Open the event log files ``settings`` (the ``[log]`` section's model, with the data
    directory's ``path``) asks for and attach them to ``bus``."""
    log_settings = settings.log
    if log_settings.files == "off":
        return []
    directory = settings.path(log_settings.directory)

    def make(name: str) -> EventLog:
        return EventLog(
            RotatingLogFile(
                directory / name,
                rotation=log_settings.rotate,
                max_bytes=log_settings.max_bytes,
                keep=log_settings.keep,
                clock=clock,
            ),
            json_lines=log_settings.format == "json",
        )

    logs: list[tuple[EventLog, EventFilter]] = []
    if log_settings.files == "combined":
        combined = make("events.log")
        for service in log_settings.service_names():
            categories = frozenset(log_settings.categories_of(service))
            if categories:
                logs.append((combined, EventFilter(frozenset({service}), categories)))
    else:
        for service in log_settings.service_names():
            categories = frozenset(log_settings.categories_of(service))
            if categories:
                logs.append((make(f"{service}.log"), EventFilter(frozenset({service}), categories)))
    opened: list[EventLog] = []
    for event_log, event_filter in logs:
        event_log.attach(bus, event_filter)
        if event_log not in opened:
            opened.append(event_log)
    return opened
