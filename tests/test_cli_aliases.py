"""``mailmax alias ...``: user aliases (A9 storage, M4)."""

from __future__ import annotations

import pytest

from tests.test_cli_support import make_system


@pytest.fixture
def system(tmp_path):
    return make_system(tmp_path)


def test_alias_crud(system):
    """A9: add, list, show, edit and delete an alias with several targets."""
    out = system.ok("alias", "add", "sales@example.test", "admin@example.test", "x@remote.test")
    assert out.strip() == "added alias sales@example.test -> admin@example.test, x@remote.test"
    assert system.json("alias", "list") == [
        {"address": "sales@example.test", "targets": ["admin@example.test", "x@remote.test"]}
    ]
    table = system.ok("alias", "list", "--domain", "example.test").splitlines()
    assert table[0].split() == ["ALIAS", "TARGETS"]
    assert table[1].split(maxsplit=1) == [
        "sales@example.test",
        "admin@example.test, x@remote.test",
    ]
    assert system.json("alias", "show", "sales@example.test")["targets"] == [
        "admin@example.test",
        "x@remote.test",
    ]
    edited = system.json("alias", "edit", "sales@example.test", "root@example.test")
    assert edited["targets"] == ["root@example.test"]
    system.ok("alias", "delete", "sales@example.test")
    assert system.ok("alias", "list") == "no aliases\n"


def test_alias_colliding_with_a_user_is_refused(system):
    """A9: an alias may not take a user's address, nor a user an alias's."""
    err = system.fails("alias", "add", "admin@example.test", "root@example.test")
    assert err.startswith("error: ") and "admin@example.test" in err
    system.ok("alias", "add", "info@example.test", "root@example.test")
    err = system.fails("user", "add", "info@example.test", "--password", "a long secret")
    assert "info@example.test" in err


def test_missing_alias_and_domain(system):
    """M4: a missing alias points at `mailmax alias list`, a missing domain at the domain list."""
    err = system.fails("alias", "show", "nope@example.test")
    assert "mailmax alias list" in err
    err = system.fails("alias", "delete", "nope@example.test")
    assert "mailmax alias list" in err
    err = system.fails("alias", "add", "x@nope.test", "root@example.test")
    assert "mailmax domain list" in err
    err = system.fails("alias", "list", "--domain", "nope.test")
    assert "mailmax domain list" in err


def test_alias_needs_a_target(system):
    """A missing TARGET is a usage error (exit 2)."""
    system.fails("alias", "add", "solo@example.test", code=2)
