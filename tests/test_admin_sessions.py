"""Administrators' session tokens in the directory: expiry moved on by use, the oldest dropped
beyond the limit, ended by sign-out, a new password and the loss of every right."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmax.core.directory.admins import AdminStore
from mailmax.core.directory.sql import SQLDirectory

ADMIN = "root@example.test"
HOUR = 3600.0


class Clock:
    """Seconds that a test moves on."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    """An administrator in a new SQLite directory, and the store on a test clock."""
    directory = SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}", base_dir=tmp_path)
    directory.add_domain("example.test", str(tmp_path / "mail"))
    directory.add_user(ADMIN, "a long secret")
    found = AdminStore(directory, clock=Clock())
    found.grant(ADMIN, system=True)
    yield found
    directory.close()


def test_a_session_lasts_its_lifetime_after_its_last_use(store) -> None:
    """M3: each use moves the expiry on; unused for the lifetime, it is gone."""
    token, expires = store.create_session(ADMIN, HOUR, 10)
    assert expires == store.clock.now + HOUR
    store.clock.now += HOUR - 1
    assert store.session_admin(token, HOUR).address == ADMIN
    store.clock.now += HOUR - 1
    assert store.session_admin(token, HOUR).address == ADMIN
    store.clock.now += HOUR
    assert store.session_admin(token, HOUR) is None
    assert store.session_admin("mms_not-a-session", HOUR) is None


def test_the_oldest_sessions_go_beyond_the_limit(store) -> None:
    """M3: at most ``max_sessions`` are kept; the least recently made go first."""
    tokens = []
    for _ in range(3):
        tokens.append(store.create_session(ADMIN, HOUR, 2)[0])
        store.clock.now += 1
    assert [store.session_admin(t, HOUR) is not None for t in tokens] == [False, True, True]


def test_sign_out_a_new_password_and_losing_the_rights_end_sessions(store) -> None:
    """M3: ending a session, setting the administrator's password and revoking every right
    each end sessions; the password ends every session of that administrator."""
    first, _ = store.create_session(ADMIN, HOUR, 10)
    second, _ = store.create_session(ADMIN, HOUR, 10)
    assert store.end_session(first) is True
    assert store.end_session(first) is False
    assert store.session_admin(first, HOUR) is None
    store.directory.set_password(ADMIN, "another long secret")
    assert store.session_admin(second, HOUR) is None
    third, _ = store.create_session(ADMIN, HOUR, 10)
    store.revoke(ADMIN)
    assert store.session_admin(third, HOUR) is None
