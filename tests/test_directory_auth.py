"""Log-ins: login-name forms, passwords, blank-password policies, disabled users (A6, A11).

Each test runs against a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory import BlankPasswordPolicy, SQLDirectory
from mailmax.core.directory.auth import LoginCache

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _populate(directory: SQLDirectory) -> None:
    directory.add_domain("example.com", "/srv/ex", aliases=["mail.example.com"])
    directory.add_domain("example.org", "/srv/org")
    directory.add_user("bob@example.com", "bobpw")
    directory.add_user("bob@example.org", "otherbob")
    directory.add_user("carol.smith@example.org", "carolpw", keep_clear=True)
    directory.add_user("dave@example.com", "davepw", account_type="disabled")
    directory.add_user("blank@example.com")
    directory.add_user("blank@example.org")


@pytest.fixture
def directory(db_url: str, tmp_path: Path) -> Iterator[SQLDirectory]:
    """An open directory on this backend (a fresh database per test)."""
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as opened:
        _populate(opened)
        yield opened


LOGINS = [
    ("bob", "example.com", "bobpw", "bob@example.com"),
    ("bob", "example.org", "otherbob", "bob@example.org"),
    ("BOB", "Example.COM", "bobpw", "bob@example.com"),
    ("bob", "mail.example.com", "bobpw", "bob@example.com"),
    ("bob@example.com", "", "bobpw", "bob@example.com"),
    ("bob@example.org", "example.com", "otherbob", "bob@example.org"),
    ("bob%example.org", "example.com", "otherbob", "bob@example.org"),
    ("bob/example.org", "example.com", "otherbob", "bob@example.org"),
    ("example.org/bob", "example.com", "otherbob", "bob@example.org"),
    ("Bob@Mail.Example.COM", "", "bobpw", "bob@example.com"),
    ("mail.example.com/bob", "", "bobpw", "bob@example.com"),
    ("carol.smith/example.org", "", "carolpw", "carol.smith@example.org"),
    ("example.org/carol.smith", "", "carolpw", "carol.smith@example.org"),
]

BAD_LOGINS = [
    ("bob", "example.com", "wrong"),
    ("bob", "example.com", "BOBPW"),
    ("bob", "example.com", ""),
    ("bob", "", "bobpw"),  # bare name, no default domain
    ("bob", "example.net", "bobpw"),  # not our domain
    ("nobody@example.com", "", "bobpw"),
    ("bob@example.com@x", "", "bobpw"),
    ("", "example.com", "bobpw"),
    ("b o b", "example.com", "bobpw"),
    ("bob@example.org", "", "bobpw"),  # another domain's bob
]


def test_every_login_form_authenticates(directory: SQLDirectory) -> None:
    """A11: user, user@domain, user%domain, user/domain, domain/user; bare names use the
    listening address's default domain; domain aliases and any letter case work."""
    for login, default_domain, password, address in LOGINS:
        user = directory.authenticate(login, password, default_domain)
        assert user is not None and user.address == address, (login, default_domain)


def test_failed_logins_return_none(directory: SQLDirectory) -> None:
    """A11: wrong passwords, unknown users and garbled names fail without an exception."""
    for login, default_domain, password in BAD_LOGINS:
        assert directory.authenticate(login, password, default_domain) is None, login


def test_disabled_users_cannot_log_in(directory: SQLDirectory) -> None:
    """A5: a Disabled account never logs in, even with the right password."""
    assert directory.authenticate("dave@example.com", "davepw") is None
    assert directory.clear_password("dave@example.com") is None
    directory.edit_user("dave@example.com", account_type="normal")
    assert directory.authenticate("dave@example.com", "davepw").address == "dave@example.com"


@pytest.mark.parametrize("policy", list(BlankPasswordPolicy))
def test_blank_password_policies_at_domain_level(
    directory: SQLDirectory, policy: BlankPasswordPolicy
) -> None:
    """A6: fill with next entered / no password / disable user / system default (disable)."""
    directory.edit_domain("example.com", blank_password=policy)
    first = directory.authenticate("blank@example.com", "chosen")
    second = directory.authenticate("blank@example.com", "different")
    if policy is BlankPasswordPolicy.FILL:
        assert first is not None and first.has_password
        assert second is None  # the first password entered became the password
        assert directory.authenticate("blank@example.com", "chosen") is not None
        assert directory.get_user("blank@example.com").has_password
    elif policy is BlankPasswordPolicy.NONE:
        assert first is not None and second is not None
        assert not directory.get_user("blank@example.com").has_password
    else:  # DISABLE, and SYSTEM with the system default (disable)
        assert first is None and second is None
    assert directory.authenticate("blank@example.org", "x") is None  # other domain: system


@pytest.mark.parametrize("system", ["fill", "none", "disable"])
def test_blank_password_system_default(db_url: str, tmp_path: Path, system: str) -> None:
    """A6: domains set to 'system' follow the default given to open(); others override it."""
    with SQLDirectory.open(
        db_url, base_dir=tmp_path, password_hasher=FAST, blank_password_default=system
    ) as directory:
        _populate(directory)
        directory.edit_domain("example.org", blank_password="disable")
        result = directory.authenticate("blank@example.com", "typed")
        assert (result is not None) == (system != "disable")
        assert directory.authenticate("blank@example.org", "typed") is None
        if system == "fill":
            assert directory.authenticate("blank@example.com", "other") is None


def test_fill_keeps_a_clear_copy_when_asked(directory: SQLDirectory) -> None:
    """A6: a password filled at log-in is kept in clear text when the user keeps clear text."""
    directory.set_password("blank@example.com", None, keep_clear=True)
    directory.edit_domain("example.com", blank_password="fill")
    assert directory.authenticate("blank", "first", "example.com") is not None
    user, clear = directory.clear_password("blank@example.com")
    assert (user.address, clear) == ("blank@example.com", "first")


def test_clear_password_only_when_kept(directory: SQLDirectory) -> None:
    """A6: APOP/CRAM-MD5 get the clear password only for users whose clear text is kept."""
    user, clear = directory.clear_password("example.org/carol.smith")
    assert (user.address, clear) == ("carol.smith@example.org", "carolpw")
    assert directory.clear_password("carol.smith", "example.org")[1] == "carolpw"
    assert directory.clear_password("bob@example.com") is None
    assert directory.clear_password("blank@example.com") is None
    assert directory.clear_password("nobody@example.com") is None


def test_weaker_hashes_are_upgraded_at_login(db_url: str, tmp_path: Path) -> None:
    """A6: a hash made with older parameters is redone with today's after a good log-in."""
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as old:
        old.add_domain("example.com", "/srv/ex")
        old.add_user("bob@example.com", "bobpw")
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=stronger) as new:
        assert new.authenticate("bob@example.com", "wrong") is None
        assert _stored_hash(new).startswith("$argon2id$v=19$m=1024,t=1,p=1$")  # untouched
        assert new.authenticate("bob@example.com", "bobpw") is not None
        assert _stored_hash(new).startswith("$argon2id$v=19$m=2048,t=2,p=1$")
        assert new.authenticate("bob@example.com", "bobpw") is not None


def _stored_hash(directory: SQLDirectory) -> str:
    with directory.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT password_hash FROM users").scalar_one()


def test_unknown_users_take_as_long_as_known_ones(db_url: str, tmp_path: Path) -> None:
    """A6: an unknown user costs a password check too, so timing does not reveal who exists."""
    slow = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=slow) as directory:
        directory.add_domain("example.com", "/srv/ex")
        directory.add_user("bob@example.com", "bobpw")

        def seconds(login: str) -> float:
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                assert directory.authenticate(login, "guess", "example.com") is None
                best = min(best, time.perf_counter() - started)
            return best

        known, unknown, garbled = seconds("bob"), seconds("nobody"), seconds("a/b/c")
    # without the dummy check an unknown user would answer over ten times faster
    assert unknown > 0.3 * known
    assert garbled > 0.3 * known


class CountingHasher(PasswordHasher):
    """The real argon2id hasher, counting its verifications."""

    verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        type(self).verified += 1
        return super().verify(hash, password)


def test_a_successful_login_is_remembered_briefly(db_url: str, tmp_path: Path) -> None:
    """A6: the next login with the same password skips argon2; a wrong one never does; a
    password changed by another process (the CLI) ends what was remembered at once."""
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with (
        SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=hasher) as directory,
        SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=hasher) as admin,
    ):
        _populate(directory)
        CountingHasher.verified = 0
        assert directory.authenticate("bob", "bobpw", "example.com") is not None
        assert CountingHasher.verified == 1
        for _ in range(3):
            assert directory.authenticate("bob@example.com", "bobpw") is not None
        assert CountingHasher.verified == 1
        assert directory.authenticate("bob@example.com", "wrong") is None
        assert CountingHasher.verified == 2
        admin.set_password("bob@example.com", "newpw")
        assert directory.authenticate("bob@example.com", "bobpw") is None
        assert directory.authenticate("bob@example.com", "newpw") is not None
        admin.edit_user("bob@example.com", account_type="disabled")
        assert directory.authenticate("bob@example.com", "newpw") is None


def test_the_login_cache_keeps_no_password_and_expires() -> None:
    """A6: only a keyed hash of the password is kept, and never longer than its lifetime."""
    now = [0.0]
    cache = LoginCache(60.0, clock=lambda: now[0], max_entries=2)
    cache.remember(1, "$argon2id$stored", "s3cret-password")
    assert "s3cret" not in repr(vars(cache))
    assert cache.matches(1, "$argon2id$stored", "s3cret-password")
    assert not cache.matches(1, "$argon2id$stored", "other")
    assert not cache.matches(1, "$argon2id$changed", "s3cret-password")
    assert not cache.matches(1, "$argon2id$stored", "s3cret-password")  # forgotten with it
    cache.remember(1, "$argon2id$stored", "s3cret-password")
    now[0] = 60.0
    assert not cache.matches(1, "$argon2id$stored", "s3cret-password")
    for user_id in (1, 2, 3):
        cache.remember(user_id, "h", "p")
    assert not cache.matches(1, "h", "p") and cache.matches(3, "h", "p")  # bounded
    other = LoginCache(60.0, clock=lambda: now[0])
    other.remember(1, "h", "p")
    assert other.digest("p") != cache.digest("p")  # a key of its own
    off = LoginCache(0.0)
    off.remember(1, "h", "p")
    assert not off.matches(1, "h", "p")
