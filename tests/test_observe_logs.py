"""Event log files: rotation driven by a clock, categories per service, text and JSON lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailmax.core import config
from mailmax.core.observe.events import EventBus
from mailmax.core.observe.logfiles import RotatingLogFile, open_logs


def local(*parts: int) -> float:
    """Unix time of a local date and time (year, month, day, hour)."""
    year, month, day, hour = parts
    return time.mktime((year, month, day, hour, 30, 0, 0, 0, -1))


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("rotation", "times"),
    [
        ("hourly", [(2026, 3, 10, 9), (2026, 3, 10, 10), (2026, 3, 10, 11), (2026, 3, 10, 12)]),
        ("daily", [(2026, 3, 10, 9), (2026, 3, 11, 9), (2026, 3, 12, 9), (2026, 3, 13, 9)]),
        # 2026-03-15 is a Sunday: the Monday after begins a new week
        ("weekly", [(2026, 3, 15, 9), (2026, 3, 16, 9), (2026, 3, 23, 9), (2026, 3, 30, 9)]),
        ("monthly", [(2026, 1, 31, 9), (2026, 2, 1, 9), (2026, 3, 1, 9), (2026, 4, 30, 9)]),
    ],
)
def test_a_new_period_begins_a_new_file_and_old_ones_beyond_keep_go(tmp_path, rotation, times):
    """L1: rotation by period, from an injectable clock; `keep` old files stay."""
    clock = Clock(local(*times[0]))
    log = RotatingLogFile(tmp_path / "smtp.log", rotation=rotation, keep=2, clock=clock)
    log.write("first\n")
    log.write("first again\n")  # same period: same file
    assert names(tmp_path) == ["smtp.log"]
    for index, when in enumerate(times[1:], start=2):
        clock.now = local(*when)
        log.write(f"line {index}\n")
    log.close()
    assert names(tmp_path) == ["smtp.log", "smtp.log.1", "smtp.log.2"]
    assert (tmp_path / "smtp.log").read_text() == "line 4\n"
    assert (tmp_path / "smtp.log.1").read_text() == "line 3\n"
    assert (tmp_path / "smtp.log.2").read_text() == "line 2\n"


def test_within_one_period_nothing_rotates(tmp_path):
    clock = Clock(local(2026, 5, 4, 0))
    log = RotatingLogFile(tmp_path / "imap.log", rotation="daily", keep=3, clock=clock)
    for hour in range(0, 24, 4):
        clock.now = local(2026, 5, 4, hour)
        log.write(f"{hour}\n")
    log.close()
    assert names(tmp_path) == ["imap.log"]


def test_size_rotation_and_never(tmp_path):
    sized = RotatingLogFile(tmp_path / "a" / "pop3.log", rotation="size", max_bytes=1000, keep=3)
    for index in range(50):
        sized.write(f"{index:03d} " + "x" * 95 + "\n")  # 100 bytes a line
    sized.close()
    assert names(tmp_path / "a") == ["pop3.log", "pop3.log.1", "pop3.log.2", "pop3.log.3"]
    assert (tmp_path / "a" / "pop3.log.1").stat().st_size == 1000
    clock = Clock(local(2026, 1, 1, 1))
    never = RotatingLogFile(tmp_path / "b" / "queue.log", rotation="never", clock=clock)
    for day in range(1, 20):
        clock.now = local(2026, 1, day, 1)
        never.write("line\n")
    never.close()
    assert names(tmp_path / "b") == ["queue.log"]


def test_bad_rotation_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="use one of never, size, hourly"):
        RotatingLogFile(tmp_path / "x.log", rotation="yearly")
    with pytest.raises(ValueError, match="keep at least 1"):
        RotatingLogFile(tmp_path / "x.log", keep=0)
    with pytest.raises(config.ConfigError, match=r"log\.rotate"):
        config.parse({"log": {"rotate": "fortnightly"}})
    with pytest.raises(config.ConfigError, match=r"log\.services\.smtp\.categories"):
        config.parse({"log": {"services": {"smtp": {"categories": ["gossip"]}}}})


def settings_for(tmp_path: Path, log: dict) -> config.Settings:
    return config.parse({"server": {"data_dir": str(tmp_path)}, "log": log})


def test_categories_switched_off_write_nothing(tmp_path):
    """L2: each service writes only its categories; a service with none has no file."""
    settings = settings_for(
        tmp_path,
        {
            "files": "per-service",
            "categories": ["connections", "logins"],
            "services": {"smtp": {"categories": ["commands"]}, "pop3": {"categories": []}},
        },
    )
    bus = EventBus(clock=lambda: local(2026, 6, 1, 12))
    logs = open_logs(settings, bus)
    bus.emit("smtp", "connections", "connection from 192.0.2.1", session="s1", ip="192.0.2.1")
    bus.emit("smtp", "commands", "EHLO client", session="s1", ip="192.0.2.1")
    bus.emit("pop3", "connections", "connection from 192.0.2.2", session="s2")
    bus.emit("pop3", "logins", "login bob ok", session="s2")
    bus.emit("imap", "logins", "login carol ok", session="s3")
    bus.emit("imap", "commands", "a1 NOOP", session="s3")
    for event_log in logs:
        event_log.detach(bus)
    folder = tmp_path / "log"
    assert not (folder / "pop3.log").exists()
    smtp = (folder / "smtp.log").read_text()
    assert "[smtp#commands] s1 EHLO client" in smtp
    assert "connection from" not in smtp
    imap = (folder / "imap.log").read_text()
    assert "[imap#logins] s3 login carol ok" in imap
    assert "NOOP" not in imap
    assert not bus.active  # closed logs listen no more


def test_combined_json_lines(tmp_path):
    """L2: one combined file, JSON lines for log shippers."""
    settings = settings_for(
        tmp_path, {"files": "combined", "format": "json", "categories": ["deliveries"]}
    )
    bus = EventBus(clock=lambda: 1_700_000_000.0)
    logs = open_logs(settings, bus)
    assert len(logs) == 1
    bus.emit("queue", "deliveries", "Q1 to bob@example.test: delivered", domains=("example.test",))
    bus.emit("smtp", "deliveries", "accepted Q1", session="s9")
    bus.emit("smtp", "errors", "500 5.5.2 Command unrecognized", session="s9")
    logs[0].detach(bus)
    lines = [
        json.loads(line) for line in (tmp_path / "log" / "events.log").read_text().splitlines()
    ]
    assert [(e["service"], e["text"]) for e in lines] == [
        ("queue", "Q1 to bob@example.test: delivered"),
        ("smtp", "accepted Q1"),
    ]
    assert lines[0]["domains"] == ["example.test"] and lines[0]["time"] == 1_700_000_000.0
