"""The server's own log file in the data directory (in addition to twistd's log)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    textFileLogObserver,
)


class MailLogFile:
    """Appends every event of ``info`` level and above to ``path``, one line per event."""

    def __init__(self, path: Path, level: LogLevel = LogLevel.info) -> None:
        self.path = Path(path)
        self.level = level
        self._handle: IO[str] | None = None
        self._observer: ILogObserver | None = None

    def start(self) -> None:
        """Open the file and subscribe to the global log publisher."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8", buffering=1)
        predicate = LogLevelFilterPredicate(defaultLogLevel=self.level)
        self._observer = FilteringLogObserver(textFileLogObserver(self._handle), [predicate])
        globalLogPublisher.addObserver(self._observer)

    def stop(self) -> None:
        """Unsubscribe and close the file."""
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
            self._observer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
