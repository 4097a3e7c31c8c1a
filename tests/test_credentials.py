"""Log-ins through the twisted.cred portal: the directory's checker, a checker a deployment
registers and one a plugin gives (real SQLite directory; the portal answers synchronously)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer

from mailmax.core.credentials import MailPortal, hashed_login, password_login, plugin_checkers
from mailmax.core.directory.errors import DirectoryUnavailable
from mailmax.core.directory.mixed import Directory
from mailmax.core.hookspecs import hookimpl
from mailmax.testing import PluginHarness


def _now(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that has fired already (the directory here blocks)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the log-in did not finish synchronously"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


#: Cheap argon2 parameters: the hashing is not what these tests are about.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    found = Directory.open(
        f"sqlite:///{tmp_path / 'd.db'}", base_dir=tmp_path, password_hasher=FAST_HASHER
    )
    found.login_cache_seconds = 0
    found.add_domain("example.test", str(tmp_path / "mail"))
    found.add_user("alice@example.test", "alicesecret", keep_clear=True)
    found.add_user("bob@example.test", "bobsecret")
    try:
        yield found
    finally:
        found.close()


def _apop(timestamp: str, password: str) -> Any:
    digest = hashlib.md5((timestamp + password).encode(), usedforsecurity=False).hexdigest()

    def verify(clear: str) -> bool:
        return hashlib.md5((timestamp + clear).encode(), usedforsecurity=False).hexdigest() == (
            digest
        )

    return verify


def test_directory_checker_takes_passwords_and_digests(directory: Directory) -> None:
    """S5: passwords and APOP digests are checked by the directory through the portal."""
    portal = MailPortal(directory)
    user = _now(password_login(portal, "alice", "alicesecret", "example.test"))
    assert user.address == "alice@example.test"
    assert _now(password_login(portal, "alice", "wrong", "example.test")) is None
    assert _now(hashed_login(portal, "alice", _apop("<1@x>", "alicesecret"), "example.test"))
    assert _now(hashed_login(portal, "alice", _apop("<1@x>", "nope"), "example.test")) is None
    # bob keeps no clear password: a digest can never match
    assert _now(hashed_login(portal, "bob", _apop("<1@x>", "bobsecret"), "example.test")) is None


def test_a_deployment_checker_is_asked_first_and_the_directory_still_answers(
    directory: Directory,
) -> None:
    """S5: a checker registered on the portal (as a .tac file would) logs users in with its
    own secrets; the directory's passwords still work; an account it vouches for that is not
    a user here never logs in."""
    portal = MailPortal(directory)
    tokens = InMemoryUsernamePasswordDatabaseDontUse(
        **{"bob@example.test": b"one-time-token", "ghost@example.test": b"boo"}
    )
    portal.registerChecker(tokens)
    user = _now(password_login(portal, "bob@example.test", "one-time-token", ""))
    assert user.address == "bob@example.test"
    assert _now(password_login(portal, "bob@example.test", "bobsecret", "")) is not None
    assert _now(password_login(portal, "ghost@example.test", "boo", "")) is None


class _TokenPlugin:
    """A plugin giving a checker through the hook."""

    @hookimpl
    def mailmax_credential_checkers(self, config: dict[str, Any]) -> list[Any]:
        return [InMemoryUsernamePasswordDatabaseDontUse(**{"alice@example.test": b"from-plugin"})]


class _BrokenChecker:
    """A checker whose back end is down."""

    credentialInterfaces = InMemoryUsernamePasswordDatabaseDontUse.credentialInterfaces

    def requestAvatarId(self, credentials: Any) -> Any:
        raise OSError("token service down")


def test_plugin_checkers_and_a_failing_checker(directory: Directory, tmp_path: Path) -> None:
    """S5: a plugin's checker (mailmax_credential_checkers) logs a user in; a checker that
    fails other than "unauthorized" makes the log-in a temporary failure, never a success."""
    harness = PluginHarness(_TokenPlugin(), data_dir=tmp_path, name="tokens")
    try:
        portal = MailPortal(directory, plugin_checkers(lambda: harness.plugin_set))
        user = _now(password_login(portal, "alice@example.test", "from-plugin", ""))
        assert user.address == "alice@example.test"
        portal.registerChecker(_BrokenChecker())
        with pytest.raises(DirectoryUnavailable, match="token service down"):
            _now(password_login(portal, "alice@example.test", "alicesecret", ""))
    finally:
        harness.close()
