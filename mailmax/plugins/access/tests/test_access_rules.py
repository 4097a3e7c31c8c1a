"""Access rules without a server: address forms, flags, list order in the table, first match."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import mailmax.plugins.access as plugin
from mailmax.core.directory.engine import transaction
from mailmax.core.pluginhost.storage import migrate_tables
from mailmax.plugin import ClientRights
from mailmax.plugins.access import store
from mailmax.plugins.access.rules import Matcher, RuleIndex, check_flags, parse_pattern


@pytest.mark.parametrize(
    ("typed", "shown", "inside", "outside"),
    [
        ("192.0.2.7", "192.0.2.7", ["192.0.2.7", "::ffff:192.0.2.7"], ["192.0.2.8"]),
        ("192.0.2.1-20", "192.0.2.1-20", ["192.0.2.1", "192.0.2.20"], ["192.0.2.21"]),
        ("147.89.8-15.*", "147.89.8-15.*", ["147.89.8.0", "147.89.15.255"], ["147.89.16.1"]),
        ("10.*", "10.*.*.*", ["10.200.3.4"], ["11.0.0.1"]),
        ("198.51.100.9/24", "198.51.100.0/24", ["198.51.100.200"], ["198.51.101.1"]),
        ("2001:db8::/32", "2001:db8::/32", ["2001:db8:1::5"], ["2001:db9::1", "192.0.2.1"]),
        ("*.*.*.*", "0.0.0.0/0", ["203.0.113.9"], ["2001:db8::1"]),
    ],
)
def test_address_forms(typed: str, shown: str, inside: list[str], outside: list[str]) -> None:
    pattern = parse_pattern(typed)
    assert pattern.text == shown
    index = RuleIndex()
    matcher = [Matcher(pattern, ClientRights(banned=True))]
    assert all(index.decide(ip, [], matcher).banned for ip in inside)
    assert not any(index.decide(ip, [], matcher).banned for ip in outside)


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("1.2.3", "not an IP address, range or network"),
        ("1.2.3.256", "not a number from 0 to 255"),
        ("1.2.9-3.*", "not a number from 0 to 255, a range"),
        ("mail.example", "not an IP address"),
    ],
)
def test_bad_address_forms_say_what_is_accepted(typed: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_pattern(typed)


@pytest.mark.parametrize(
    ("kind", "flags", "why"),
    [
        ("custom", [], "needs at least one flag"),
        ("trusted", ["allow-relaying"], "a trusted rule takes none"),
        ("custom", ["fly"], "unknown flag 'fly'"),
        ("custom", ["allow-relaying", "local-mail-only"], "contradict"),
        ("friendly", [], "not 'friendly'"),
    ],
)
def test_flags_are_checked(kind: str, flags: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_flags(kind, flags)


def test_flags_come_back_in_one_order() -> None:
    flags = check_flags("custom", ["Exempt-From-Connection-Limits", "no-open-relay-check"])
    assert flags == ("no-open-relay-check", "exempt-from-connection-limits")


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    """A directory database with the plugin's table, migrated as the server does."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rules.db'}")
    migrate_tables(engine, plugin.NAME, plugin, plugin.TABLES)
    return engine


def test_lists_keep_their_order_through_add_move_and_delete(engine: sa.Engine) -> None:
    with transaction(engine, write=True) as c:
        for pattern in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            store.add(c, "", pattern, "banned", (), "")
        store.add(c, "", "10.0.0.4", "trusted", (), "", position=1)
        store.add(c, "127.0.0.1", "10.0.0.1", "permitted", (), "")
        _, added = store.add(c, "", "10.0.0.2", "permitted", (), "now permitted")
        assert not added  # the same pattern: changed in place
        store.move(c, "", "10.0.0.1", 99)
        store.delete(c, "", "10.0.0.3")
        system = store.listing(c, "")
        assert [(r.position, r.pattern, r.kind) for r in system] == [
            (1, "10.0.0.4", "trusted"),
            (2, "10.0.0.2", "permitted"),
            (3, "10.0.0.1", "banned"),
        ]
        index = RuleIndex(store.all_rules(c))
    # the listener's list first, then the system-wide one
    assert not index.decide("10.0.0.1", ["127.0.0.1"], []).banned
    assert index.decide("10.0.0.1", ["127.0.0.2"], []).banned
    assert index.decide("10.0.0.4", [], []).trusted
    assert index.decide("10.0.0.9", [], []) == ClientRights()
