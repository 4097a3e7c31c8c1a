"""Block-list entries and query names: IPv4 reversed octets, IPv6 reversed nibbles, codes."""

from __future__ import annotations

import pytest

import mailmax.plugins.rbl as rbl
from mailmax.plugins.rbl.lists import parse_list, query_name, refused_answer
from mailmax.testing import PluginHarness


def test_ipv4_query_reverses_the_octets() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert query_name("::ffff:192.0.2.99", "bl.example") == "99.2.0.192.bl.example"


def test_ipv6_query_reverses_every_nibble() -> None:
    name = query_name("2001:db8::1", "bl.example")
    assert name == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.bl.example"
    assert len(name.split(".")) == 32 + 2


def test_codes_filter_answers_and_refused_answers_never_count() -> None:
    block = parse_list("bl.example=127.0.0.2-127.0.0.11 127.0.0.20")
    assert [block.lists(a) for a in ("127.0.0.2", "127.0.0.11", "127.0.0.12", "127.0.0.20")] == [
        True, True, False, True,
    ]  # fmt: skip
    assert parse_list("plain.example").lists("127.0.0.99")
    assert not parse_list("plain.example").lists("10.0.0.1")
    assert refused_answer("127.255.255.254") and not refused_answer("127.0.0.2")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("bad zone", "is not a DNS zone name"),
        ("bl.example=127.0.0.x", "is not an answer address or range"),
        ("bl.example=127.0.0.9-127.0.0.2", "ends before it starts"),
    ],
)
def test_bad_entries_are_refused_saying_why(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PluginHarness(rbl, {"zones": [entry]})
