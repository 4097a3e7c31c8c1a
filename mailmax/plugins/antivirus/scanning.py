"""Scanning one message with the configured scanner, once, and what came of it.

The scanners are built from the system settings and kept while those stay the same (a clamd
client keeps its bound on parallel scans). :func:`scan_once` remembers each message's result in
the transaction's stash, so recipient groups of one message share one scan; the result also
travels with the message in the spool envelope (:func:`note_of` / :func:`from_note`), so the
transit hook does not scan it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import threads

from mailmax.plugins.antivirus.clamdclient import ClamdClient, ScannerError
from mailmax.plugins.antivirus.command import CommandScanner, split_command
from mailmax.plugins.antivirus.mime import attachments

#: The key of this plugin's note on a message (``Envelope.notes``).
NOTE = "antivirus"


@dataclass(frozen=True)
class ScanResult:
    """``status`` is clean, infected, unscanned (scanner failure) or oversize."""

    status: str
    scanner: str
    virus: str = ""
    detail: str = ""
    #: IMAP-style numbers of the infected parts (for disinfecting), when known.
    parts: tuple[tuple[str, str], ...] = ()


@dataclass
class _Memo:
    """Results of this transaction's message, by the settings that shape a scan."""

    results: dict[tuple[Any, ...], ScanResult] = field(default_factory=dict)


_SCANNERS: dict[tuple[Any, ...], Any] = {}


def scanner_for(reactor: Any, config: Any) -> Any:
    """The scanner the settings name (a :class:`ClamdClient` or :class:`CommandScanner`)."""
    if config.scanner == "clamd":
        key: tuple[Any, ...] = ("clamd", config.clamd_socket, config.timeout, config.parallel_scans)
    else:
        key = ("command", config.command, tuple(config.infected_statuses), config.timeout)
    found = _SCANNERS.get(key)
    if found is None:
        if config.scanner == "clamd":
            found = ClamdClient(reactor, config.clamd_socket, config.timeout, config.parallel_scans)
        else:
            found = CommandScanner(
                reactor,
                split_command(config.command),
                config.timeout,
                frozenset(config.infected_statuses),
                config.max_depth,
            )
        _SCANNERS[key] = found
    return found


def scanner_name(config: Any) -> str:
    """How the header names the scanner."""
    return "clamd" if config.scanner == "clamd" else "external command"


def _section(path: tuple[int, ...]) -> str:
    return ".".join(str(index + 1) for index in path)


async def scan_bytes(reactor: Any, config: Any, message: bytes) -> ScanResult:
    """Scan ``message`` now (see :class:`ScanResult`)."""
    name = scanner_name(config)
    if len(message) > config.max_scan_size:
        return ScanResult("oversize", name, detail=f"over {config.max_scan_size} bytes")
    scanner = scanner_for(reactor, config)
    try:
        if config.scanner == "command":
            verdict = await scanner.scan(message)
            return _result(name, verdict.virus)
        if config.scan == "message":
            verdict = await scanner.scan(message)
            if not verdict.infected:
                return ScanResult("clean", name)
        infected = []
        parts = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), attachments, message, config.max_depth
        )
        for part in parts:
            found = await scanner.scan(part.payload)
            if found.infected:
                infected.append((_section(part.path), found.virus))
        if infected:
            return ScanResult("infected", name, infected[0][1], parts=tuple(infected))
        if config.scan == "message":  # clamd saw it in a part it decoded itself
            return ScanResult("infected", name, verdict.virus)
        return ScanResult("clean", name)
    except ScannerError as exc:
        return ScanResult("unscanned", name, detail=str(exc))


def _result(name: str, virus: str | None) -> ScanResult:
    return ScanResult("infected", name, virus) if virus else ScanResult("clean", name)


async def scan_once(reactor: Any, envelope: Any, config: Any, message: bytes) -> ScanResult:
    """The result for this transaction's message: scanned at the first call, then remembered."""
    memo = envelope.stash.get(_Memo)
    key = (config.scanner, config.max_scan_size, config.scan, config.max_depth)
    if key not in memo.results:
        memo.results[key] = await scan_bytes(reactor, config, message)
    return memo.results[key]


def note_of(result: ScanResult, action: str) -> str:
    """The note kept with the message: ``status action virus``."""
    return " ".join(part for part in (result.status, action, result.virus) if part)


def from_note(note: str) -> tuple[str, str, str]:
    """``(status, action, virus)`` of a note written by :func:`note_of`."""
    status, _, rest = note.partition(" ")
    if status != "infected":
        return status, "", ""
    action, _, virus = rest.partition(" ")
    return status, action, virus
