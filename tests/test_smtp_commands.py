"""Parsing of SMTP command lines and envelope addresses (S1, P11): strict, bounded, no surprises."""

from __future__ import annotations

import pytest

from mailmax.core.smtp.commands import (
    Address,
    SMTPReplyError,
    normalize_domain,
    parse_command,
    parse_mail,
    parse_mailbox,
    parse_rcpt,
)


def test_command_verb_is_upper_cased_and_argument_kept() -> None:
    """S1: verbs are case-insensitive; the argument keeps its case."""
    command = parse_command(b"mail FROM:<Alice@Example.TEST>")
    assert command.verb == "MAIL"
    assert command.arg == "FROM:<Alice@Example.TEST>"


@pytest.mark.parametrize(
    "line",
    [b"MAIL\x00FROM:<a@b>", b"HELO a\rb", b"\xff\xfe", b"MA1L FROM:<a", b"", b" NOOP", b"X" * 17],
)
def test_bad_command_lines_are_500(line: bytes) -> None:
    """S1: control characters, invalid UTF-8 and odd verbs are refused with 500 5.5.2."""
    with pytest.raises(SMTPReplyError) as err:
        parse_command(line)
    assert (err.value.code, err.value.status) == (500, "5.5.2")


def test_mail_from_with_params() -> None:
    """S1: MAIL FROM:<path> SIZE=n BODY=8BITMIME; keywords upper-cased."""
    sender, params = parse_mail("FROM:<bob@example.test> size=1234 BODY=8BITMIME")
    assert sender == Address("bob", "example.test")
    assert params == {"SIZE": "1234", "BODY": "8BITMIME"}


def test_mail_from_null_sender_and_space_after_colon() -> None:
    """S1: the null reverse path is allowed; a space after the colon is tolerated."""
    assert parse_mail("FROM:<>") == (None, {})
    assert parse_mail("FROM: <a@b.test>")[0] == Address("a", "b.test")


@pytest.mark.parametrize(
    "arg",
    [
        "FROM:a@b.test",  # no angle brackets
        "FROM:<a@b.test",  # unterminated
        "TO:<a@b.test>",  # wrong keyword
        "FROM:<a@b.test>junk",  # junk glued to the path
        "FROM:<a@b.test> SIZE=1 SIZE=2",  # duplicate parameter
        "FROM:<a@b.test> =x",  # bad keyword
        "FROM:<a@b.test> X=a=b",  # '=' in a value
        "FROM:<a..b@b.test>",  # empty atom
        "FROM:<.a@b.test>",
        "FROM:<a@>",
        "FROM:<@b.test>",
        "FROM:<a@-b.test>",
        "FROM:<a@b_c.test>",
        "FROM:<a@[1.2.3]>",
        "FROM:<a@[IPv6:zz::1]>",
        'FROM:<"unterminated@b.test>',
        "FROM:<a b@c.test>",
        "FROM:<a@b.test> " + " ".join(f"P{i}=1" for i in range(20)),
    ],
)
def test_bad_mail_syntax_is_501(arg: str) -> None:
    """S1: malformed MAIL arguments are refused with 501."""
    with pytest.raises(SMTPReplyError) as err:
        parse_mail(arg)
    assert err.value.code == 501


def test_rcpt_requires_an_address() -> None:
    """S1: RCPT TO:<> is a syntax error (the null path is for senders only)."""
    with pytest.raises(SMTPReplyError) as err:
        parse_rcpt("TO:<>")
    assert (err.value.code, err.value.status) == (501, "5.1.3")


def test_rcpt_postmaster_without_domain() -> None:
    """S1: RCPT TO:<Postmaster> (RFC 5321 4.5.1) parses to a domain-less postmaster."""
    assert parse_rcpt("TO:<Postmaster>")[0] == Address("postmaster", "")


def test_source_route_is_ignored() -> None:
    """P11: <@a,@b:user@c> means user@c; the route is checked for syntax only."""
    address, _ = parse_rcpt("TO:<@relay.test,@[192.0.2.1]:alice@example.test>")
    assert address == Address("alice", "example.test")
    address, _ = parse_rcpt("TO:<@[IPv6:2001:db8::1]:alice@example.test>")
    assert address == Address("alice", "example.test")
    with pytest.raises(SMTPReplyError):
        parse_rcpt("TO:<@relay.test,bad:alice@example.test>")


def test_quoted_local_parts() -> None:
    """P11: quoted local parts are unquoted; one equal to a dot-string is the same mailbox."""
    assert parse_rcpt('TO:<"alice"@example.test>')[0] == Address("alice", "example.test")
    address = parse_rcpt('TO:<"user@remote.test"@example.test>')[0]
    assert address.local == "user@remote.test"
    assert address.routing_hack
    assert str(address) == '"user@remote.test"@example.test'
    escaped = parse_rcpt(r'TO:<"a\"b\\c d"@example.test>')[0]
    assert escaped.local == 'a"b\\c d'
    assert str(escaped) == r'"a\"b\\c d"@example.test'


@pytest.mark.parametrize("path", ["user%remote.test@example.test", "remote.test!user@example.test"])
def test_routing_characters_are_flagged(path: str) -> None:
    """P11: the %-hack and bang paths are recognised so the server can refuse to route them."""
    assert parse_rcpt(f"TO:<{path}>")[0].routing_hack


def test_domains_are_lower_cased_and_trailing_dot_refused() -> None:
    """P11: domains compare case-insensitively; a trailing dot is not a valid domain here."""
    assert parse_rcpt("TO:<Alice@EXAMPLE.Test>")[0] == Address("Alice", "example.test")
    with pytest.raises(SMTPReplyError) as err:
        parse_rcpt("TO:<alice@example.test.>")
    assert (err.value.code, err.value.status) == (501, "5.1.3")


def test_address_literals() -> None:
    """P11: IP literals are parsed, normalised and flagged as literals."""
    address = parse_rcpt("TO:<user@[192.0.2.1]>")[0]
    assert address == Address("user", "[192.0.2.1]", literal=True)
    v6 = parse_rcpt("TO:<user@[ipv6:2001:DB8:0::1]>")[0]
    assert v6.domain == "[IPv6:2001:db8::1]" and v6.literal


def test_idna_domains() -> None:
    """S1: U-label domains become A-labels; broken A-labels are refused."""
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    assert parse_rcpt("TO:<a@Bücher.example>")[0].domain == "xn--bcher-kva.example"
    assert parse_rcpt("TO:<a@xn--bcher-kva.example>")[0].domain == "xn--bcher-kva.example"
    with pytest.raises(SMTPReplyError):
        parse_rcpt("TO:<a@xn--zz-zzzzz.example>")
    with pytest.raises(ValueError):
        normalize_domain("ab--cd.example")


def test_non_ascii_local_part_needs_smtputf8() -> None:
    """S1: SMTPUTF8 is not offered, so a non-ASCII local part is refused with 553 5.6.7."""
    with pytest.raises(SMTPReplyError) as err:
        parse_rcpt("TO:<jörg@example.test>")
    assert (err.value.code, err.value.status) == (553, "5.6.7")


def test_length_limits() -> None:
    """S1: local parts over 64 octets and domains over 255 are refused (RFC 5321 4.5.3.1)."""
    assert parse_rcpt(f"TO:<{'a' * 64}@example.test>")[0].local == "a" * 64
    with pytest.raises(SMTPReplyError):
        parse_rcpt(f"TO:<{'a' * 65}@example.test>")
    long_domain = ".".join(["a" * 63] * 4) + ".test"
    with pytest.raises(SMTPReplyError):
        parse_rcpt(f"TO:<a@{long_domain}>")


def test_vrfy_mailbox_forms() -> None:
    """P2: VRFY takes a bare or bracketed address."""
    assert parse_mailbox("alice@example.test") == Address("alice", "example.test")
    assert parse_mailbox("<alice@example.test>") == Address("alice", "example.test")
