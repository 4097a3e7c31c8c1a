"""Recipient look-ups for mail routing: users, aliases, catch-all, domain aliases (A1-A5, A9).

Each test runs against a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.directory import DomainType, Lookup, SQLDirectory


@pytest.fixture
def directory(db_url: str, tmp_path: Path) -> Iterator[SQLDirectory]:
    """An open directory on this backend (a fresh database per test)."""
    with SQLDirectory.open(db_url, base_dir=tmp_path) as opened:
        opened.add_domain("example.com", "/srv/ex", aliases=["mail.example.com"])
        for address, kind in [
            ("bob@example.com", "normal"),
            ("dave@example.com", "disabled"),
            ("trap@example.com", "spamtrap"),
            ("catch@example.com", "normal"),
        ]:
            opened.add_user(address, account_type=kind)
        opened.add_alias("sales@example.com", ["bob", "partner@remote.org"])
        yield opened


def test_users_disabled_users_and_spam_traps(directory: SQLDirectory) -> None:
    """A5: a user is USER, a disabled one DISABLED, a spam trap USER (with its type)."""
    found = directory.lookup_recipient("bob@example.com")
    assert (found.status, found.address, found.mailbox) == (
        Lookup.USER,
        "bob@example.com",
        "bob@example.com",
    )
    assert found.domain.name == "example.com"
    assert directory.lookup_recipient("dave@example.com").status is Lookup.DISABLED
    trap = directory.lookup_recipient("trap@example.com")
    assert trap.status is Lookup.USER and trap.user.account_type == "spamtrap"


def test_lookups_ignore_case_and_follow_domain_aliases(directory: SQLDirectory) -> None:
    """A3: BOB@Mail.Example.COM is bob@example.com."""
    found = directory.lookup_recipient("BOB@Mail.Example.COM")
    assert (found.status, found.address, found.mailbox) == (
        Lookup.USER,
        "bob@example.com",
        "bob@example.com",
    )
    assert directory.lookup_recipient("bob@example.com.").status is Lookup.USER


def test_aliases_give_their_targets(directory: SQLDirectory) -> None:
    """A9: an alias resolves to its targets (also through a domain alias)."""
    found = directory.lookup_recipient("Sales@mail.example.com")
    assert found.status is Lookup.ALIAS
    assert found.address == "sales@example.com"
    assert found.targets == ("bob@example.com", "partner@remote.org")
    assert found.mailbox == ""


def test_catch_all_takes_unknown_local_parts(directory: SQLDirectory) -> None:
    """A2: with a catch-all account, unknown users go to it; never when it is disabled."""
    assert directory.lookup_recipient("nobody@example.com").status is Lookup.UNKNOWN_USER
    directory.edit_domain("example.com", catch_all="catch")
    found = directory.lookup_recipient("Nobody@mail.example.com")
    assert (found.status, found.address, found.mailbox) == (
        Lookup.CATCH_ALL,
        "nobody@example.com",
        "catch@example.com",
    )
    # odd local parts that can never be users still reach the catch-all
    assert directory.lookup_recipient('"odd name"@example.com').status is Lookup.CATCH_ALL
    # users, disabled users and aliases come first
    assert directory.lookup_recipient("bob@example.com").status is Lookup.USER
    assert directory.lookup_recipient("dave@example.com").status is Lookup.DISABLED
    assert directory.lookup_recipient("sales@example.com").status is Lookup.ALIAS
    directory.edit_user("catch@example.com", account_type="disabled")
    assert directory.lookup_recipient("nobody@example.com").status is Lookup.UNKNOWN_USER


def test_postmaster_follows_the_normal_rules(directory: SQLDirectory) -> None:
    """S8: postmaster is an ordinary name: a user or alias (the wizard makes one), else the
    catch-all, else unknown."""
    assert directory.lookup_recipient("postmaster@example.com").status is Lookup.UNKNOWN_USER
    directory.edit_domain("example.com", catch_all="catch")
    assert directory.lookup_recipient("postmaster@example.com").mailbox == "catch@example.com"
    directory.add_alias("postmaster@example.com", ["bob"])
    assert directory.lookup_recipient("Postmaster@example.com").targets == ("bob@example.com",)


def test_other_domains_are_not_local(directory: SQLDirectory) -> None:
    """P11: addresses outside our domains are NOT_LOCAL (relay rules apply)."""
    found = directory.lookup_recipient("Someone@Remote.ORG")
    assert (found.status, found.address, found.domain) == (
        Lookup.NOT_LOCAL,
        "Someone@remote.org",
        None,
    )
    assert not directory.is_local_domain("remote.org")
    assert directory.is_local_domain("EXAMPLE.com") and directory.is_local_domain(
        "mail.example.com"
    )


@pytest.mark.parametrize("kind", ["relay", "backup", "etrn"])
def test_pass_on_domains_are_not_local_but_named(directory: SQLDirectory, kind: str) -> None:
    """A1/Q8-Q10: mail for relay, backup and ETRN domains is passed on: NOT_LOCAL with the
    domain set, so routing knows the domain is ours to accept."""
    directory.add_domain(
        "other.test", "/srv/o", type=kind, delivery_host="mx.other.test", backup_priority=20
    )
    found = directory.lookup_recipient("Anyone@Other.test")
    assert found.status is Lookup.NOT_LOCAL
    assert found.domain.name == "other.test" and found.domain.type == DomainType(kind)
    assert found.address == "Anyone@other.test"
    assert directory.is_local_domain("other.test")


def test_garbage_addresses_never_raise(directory: SQLDirectory) -> None:
    """Network input: a malformed address is simply not local."""
    for address in ["", "@", "bob", "bob@", "@example.com", "bob@exa mple.com", "a@[127.0.0.1]"]:
        assert directory.lookup_recipient(address).status is Lookup.NOT_LOCAL, address
