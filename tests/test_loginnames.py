"""User names, domain names, login-name forms and target addresses (A5, A11)."""

from __future__ import annotations

import pytest

from mailmax.core.directory import DirectoryError, check_domain_name, check_user_name, parse_login
from mailmax.core.directory.loginnames import check_target, valid_user_name

LOCAL = {"example.com", "mail.example.com", "example.org"}


def is_local(name: str) -> bool:
    """The domains served in these tests."""
    return name in LOCAL


@pytest.mark.parametrize(
    "name",
    ["bob", "Bob.Smith", "o'neil", "a+b", "x_y-z", "!#$&*=?^`{|}~", "a" * 64, "1", "a.b.c"],
)
def test_documented_user_name_characters_are_accepted(name: str) -> None:
    """A5: letters, digits and the documented symbols are valid; names are lower-cased."""
    assert valid_user_name(name)
    assert check_user_name(name) == name.lower()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a/b", "'/'"),
        ("a@b", "'@'"),
        ("a%b", "'%'"),
        ("a b", "' '"),
        ("a\tb", "'\\t'"),
        ("a\x00b", "'\\x00'"),
        ("ümlaut", "'ü'"),
        ("a" * 65, "65 characters"),
        ("", "empty"),
        (".bob", "starts or ends with a dot"),
        ("bob.", "starts or ends with a dot"),
        ("bo..b", "two dots in a row"),
    ],
)
def test_bad_user_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    """A5: never / @ % whitespace or control characters; at most 64; dot rules."""
    assert not valid_user_name(name)
    with pytest.raises(DirectoryError, match="not valid") as info:
        check_user_name(name)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ],
)
def test_domain_names_are_canonical_idna(given: str, canonical: str) -> None:
    """A1: domain names are IDNA, lower-case ASCII, a trailing dot dropped."""
    assert check_domain_name(given) == canonical


@pytest.mark.parametrize(
    "bad",
    ["", " ", "exa mple.com", "a..b", "-a.com", "a_b.com", "a" * 64 + ".com", "a." * 127 + "b"],
)
def test_bad_domain_names_are_refused(bad: str) -> None:
    """A1: labels of 1-63 characters, at most 253 in all, no spaces or odd characters."""
    with pytest.raises(DirectoryError, match="domain name"):
        check_domain_name(bad)


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("bob", ("bob", "example.com")),
        ("BOB", ("bob", "example.com")),
        ("bob@example.org", ("bob", "example.org")),
        ("bob%example.org", ("bob", "example.org")),
        ("bob/example.org", ("bob", "example.org")),
        ("example.org/bob", ("bob", "example.org")),
        ("Example.ORG/Bob", ("bob", "example.org")),
        ("bob@Mail.Example.com", ("bob", "mail.example.com")),
        ("bob.smith/example.org", ("bob.smith", "example.org")),
        ("example.org/bob.smith", ("bob.smith", "example.org")),
    ],
)
def test_every_login_form(login: str, expected: tuple[str, str]) -> None:
    """A11: user, user@domain, user%domain, user/domain, domain/user; bare -> default domain."""
    assert parse_login(login, "example.com", is_local) == expected


def test_slash_form_prefers_the_side_that_is_a_local_domain() -> None:
    """A11: the side that is a local domain decides between user/domain and domain/user."""
    assert parse_login("example.org/foo.bar", "", is_local) == ("foo.bar", "example.org")
    assert parse_login("foo.bar/example.org", "", is_local) == ("foo.bar", "example.org")
    # neither side is ours: read as user/domain (and the user will not be found)
    assert parse_login("foo.bar/other.net", "", is_local) == ("foo.bar", "other.net")


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ("", "empty"),
        ("bob", "no domain"),
        ("bob@example.com/x", "more than one"),
        ("a@b@c", "more than one"),
        ("@example.com", "not valid"),
        ("bob@", "domain name"),
        ("bo b@example.com", "not valid"),
        ("/", "neither"),
    ],
)
def test_garbage_logins_raise(login: str, message: str) -> None:
    """A11: a login that cannot name a user raises DirectoryError saying why."""
    with pytest.raises(DirectoryError, match=message):
        parse_login(login, "", is_local)


def test_targets_are_qualified_and_checked() -> None:
    """A7/A9: bare targets join the owner's domain; remote local parts keep their case."""
    assert check_target("Bob", "Example.com") == "bob@example.com"
    assert check_target(" Joe.Smith@Remote.ORG ", "example.com") == "Joe.Smith@remote.org"
    assert check_target("a%b@remote.org", "example.com") == "a%b@remote.org"
    for bad in ("", "a b@remote.org", "<x>@remote.org", ".a@remote.org", "a@", "a@b c"):
        with pytest.raises(DirectoryError):
            check_target(bad, "example.com")
