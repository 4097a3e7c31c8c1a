"""The server's own log file in the data directory (in addition to twistd's log).

Lines look like twistd's (``<time> [<namespace>#<level>] <text>``) but cost a fraction: the
timestamp is formatted once per second, and a plain ``{name}`` format is filled in with
``str.format`` (Twisted's formatter, which also allows ``{name()}``, is the fallback).

The lines written for every connection and message (SMTP connection, accepted, delivered)
come from :func:`mail_logger` loggers. While a log file is open they go to it only, formatted
once: the mail log, like an MTA's maillog, while twistd's log keeps the server's life,
warnings and errors. Without a log file they go to twistd's log like every other event.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO, Any, cast

from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    eventAsText,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

#: The timestamp format of twistd's log lines.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


@implementer(ILogObserver)
class LineObserver:
    """Writes every event of ``level`` and above to ``handle``, one line each (thread-safe)."""

    def __init__(self, handle: IO[str], level: LogLevel = LogLevel.info) -> None:
        self._handle = handle
        self._levels = frozenset(
            lvl
            for lvl in LogLevel.iterconstants()
            if lvl >= level  # type: ignore[operator]
        )
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def __call__(self, event: dict[str, Any]) -> None:
        """Format ``event`` and append it, if its level is high enough."""
        level: LogLevel | None = event.get("log_level")
        if level is None or level not in self._levels:
            return
        text = _text(event)
        if not text:
            return
        system = event.get("log_system")
        if system is None:
            system = f"{event.get('log_namespace', '-')}#{level.name}"
        when = event.get("log_time")
        line = f"{self._timestamp(when)} [{system}] {text}"
        if "\n" in line:
            line = line.replace("\n", "\n\t")
        with self._lock:
            self._handle.write(line + "\n")

    def switch(self, handle: IO[str]) -> IO[str]:
        """Write to ``handle`` from now on; returns the handle written to until now."""
        with self._lock:
            old, self._handle = self._handle, handle
        return old

    def _timestamp(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._stamp = time.strftime(TIME_FORMAT, time.localtime(second))
            self._second = second
        return self._stamp


def _text(event: dict[str, Any]) -> str:
    """The event's message (with the traceback of a logged failure)."""
    if "log_failure" in event:
        return eventAsText(event, includeTimestamp=False, includeSystem=False)
    template = event.get("log_format")
    if template is None:
        return formatEvent(event)
    try:
        return template.format(**event)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError):
        return formatEvent(event)


#: Where :func:`mail_logger` loggers send their events.
MAIL_LOG = LogPublisher()
_global_observer = cast(ILogObserver, globalLogPublisher)
MAIL_LOG.addObserver(_global_observer)
_open_files: list[MailLogFile] = []


def mail_logger(namespace: str) -> Logger:
    """A logger for the per-message lines (see the module text)."""
    return Logger(namespace=namespace, observer=cast(ILogObserver, MAIL_LOG))


class MailLogFile:
    """Appends every event of ``info`` level and above to ``path``, one line per event."""

    def __init__(self, path: Path, level: LogLevel = LogLevel.info) -> None:
        self.path = Path(path)
        self.level = level
        self._handle: IO[str] | None = None
        self._observer: LineObserver | None = None

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("a", encoding="utf-8", errors="replace", buffering=1)

    def start(self) -> None:
        """Open the file and subscribe to the global log publisher."""
        self._handle = self._open()
        self._observer = LineObserver(self._handle, self.level)
        globalLogPublisher.addObserver(cast(ILogObserver, self._observer))
        MAIL_LOG.addObserver(cast(ILogObserver, self._observer))
        if not _open_files:
            MAIL_LOG.removeObserver(_global_observer)
        _open_files.append(self)

    def reopen(self, path: Path | None = None) -> None:
        """Close the file and open ``path`` (default: the same path) in its place, so that
        after a log rotation (the file renamed away) new lines go to a new file at the path.

        Raises OSError, changing nothing, when the new file cannot be opened."""
        old_path = self.path
        self.path = Path(path) if path is not None else self.path
        try:
            handle = self._open()
        except OSError:
            self.path = old_path
            raise
        if self._observer is None:
            handle.close()
            return
        self._observer.switch(handle)
        if self._handle is not None:
            self._handle.close()
        self._handle = handle

    def stop(self) -> None:
        """Unsubscribe and close the file."""
        if self._observer is not None:
            globalLogPublisher.removeObserver(cast(ILogObserver, self._observer))
            MAIL_LOG.removeObserver(cast(ILogObserver, self._observer))
            self._observer = None
            _open_files.remove(self)
            if not _open_files:
                MAIL_LOG.addObserver(_global_observer)
        if self._handle is not None:
            self._handle.close()
            self._handle = None
