"""The audit log's retention: old entries dropped at start and once a day on the reactor's
clock (a task.Clock here), never when the retention is 0, and a bad setting refused."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from twisted.internet import defer, task

from mailmax.core import config
from mailmax.core.adminsettings import AdminSettings
from mailmax.core.auditprune import DAY_SECONDS, AuditPruner
from mailmax.core.directory.admins import AdminStore
from mailmax.core.directory.sql import SQLDirectory

NOW = 1_800_000_000.0


@pytest.fixture
def directory(tmp_path: Path):
    """A new SQLite directory."""
    opened = SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}", base_dir=tmp_path)
    yield opened
    opened.close()


def _record(directory: SQLDirectory, days_ago: float, target: str) -> None:
    store = AdminStore(directory, clock=lambda: NOW - days_ago * DAY_SECONDS)
    store.audit("cli:root", "cli", "domain.add", target, {})


def _targets(directory: SQLDirectory) -> list[str]:
    return sorted(e.target for e in AdminStore(directory).audit_entries(limit=1000))


def _pruner(directory: SQLDirectory, clock: task.Clock, days: int) -> AuditPruner:
    settings = types.SimpleNamespace(admin=AdminSettings(audit_retention_days=days))

    def prune(before: float) -> defer.Deferred[int]:
        return defer.succeed(AdminStore(directory).prune_audit(before))

    return AuditPruner(clock, lambda: settings, prune)


def test_old_entries_go_at_start_and_then_daily(directory) -> None:
    """M3: with 30 days, an entry of 40 days ago goes at start, one of 29 days ago two days
    later, one of today stays."""
    for days_ago, target in ((40, "old.test"), (29, "recent.test"), (0, "today.test")):
        _record(directory, days_ago, target)
    clock = task.Clock()
    clock.advance(NOW)
    pruner = _pruner(directory, clock, 30)
    pruner.start()
    assert _targets(directory) == ["recent.test", "today.test"]
    clock.advance(DAY_SECONDS)
    assert _targets(directory) == ["recent.test", "today.test"]  # 30 days old: kept
    clock.advance(DAY_SECONDS)
    assert _targets(directory) == ["today.test"]
    pruner.stop()
    assert not clock.getDelayedCalls()


def test_zero_keeps_every_entry(directory) -> None:
    """M3: a retention of 0 days keeps the audit log forever."""
    _record(directory, 10_000, "ancient.test")
    clock = task.Clock()
    clock.advance(NOW)
    pruner = _pruner(directory, clock, 0)
    pruner.start()
    clock.pump([DAY_SECONDS] * 3)
    assert _targets(directory) == ["ancient.test"]
    pruner.stop()


def test_a_failed_prune_is_tried_again_the_next_day(directory) -> None:
    """M3: a prune that fails (database away) does not stop the daily runs."""
    _record(directory, 400, "old.test")
    clock = task.Clock()
    clock.advance(NOW)
    pruner = _pruner(directory, clock, 365)
    working = pruner.prune
    pruner.prune = lambda before: defer.fail(OSError("database away"))
    pruner.start()
    assert _targets(directory) == ["old.test"]
    pruner.prune = working
    clock.advance(DAY_SECONDS)
    assert _targets(directory) == []
    pruner.stop()


def test_the_setting_is_validated(tmp_path: Path) -> None:
    """M3: the default is a year; a negative number of days is refused, saying what is allowed."""
    path = tmp_path / "mailmax.toml"
    path.write_text("")
    assert config.load(path).admin.audit_retention_days == 365
    path.write_text("[admin]\naudit_retention_days = -1\n")
    with pytest.raises(config.ConfigError, match=r"admin\.audit_retention_days"):
        config.load(path)
