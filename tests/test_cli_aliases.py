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
    edited = system.changed("alias", "edit", "sales@example.test", "root@example.test")
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


def test_alias_targets_are_checked(system):
    """A local target must be a user or an alias; a remote one a full address."""
    err = system.fails("alias", "add", "new3@example.test", "notanaddress")
    assert "'notanaddress' (notanaddress@example.test) is neither a user nor an alias" in err
    err = system.fails("alias", "add", "new3@example.test", "ghost@example.test")
    assert "ghost@example.test is neither a user nor an alias of example.test" in err
    err = system.fails("alias", "add", "new3@example.test", "someone@nodots")
    assert "someone@nodots is not a full address" in err
    assert system.ok("alias", "list") == "no aliases\n"
    system.ok("alias", "add", "new3@example.test", "admin", "x@remote.test")
    assert system.json("alias", "show", "new3@example.test")["targets"] == [
        "admin@example.test",
        "x@remote.test",
    ]


def test_alias_loops_are_refused(system):
    """An alias chain that comes back to itself is refused at add and at edit."""
    system.ok("alias", "add", "loop2@example.test", "admin@example.test")
    system.ok("alias", "add", "loop1@example.test", "loop2@example.test")
    err = system.fails("alias", "edit", "loop2@example.test", "loop1@example.test")
    assert "loop2@example.test -> loop1@example.test -> loop2@example.test would be a loop" in err
    system.ok("alias", "add", "loop3@example.test", "loop1@example.test")
    err = system.fails("alias", "edit", "loop2@example.test", "root", "loop3@example.test")
    assert "loop2@example.test -> loop3@example.test -> loop1@example.test" in err
    assert system.json("alias", "show", "loop2@example.test")["targets"] == ["admin@example.test"]
