"""Domains, their mailbox defaults, domain aliases and deleting them (A1, A2, A3 storage, A4).

Each test runs against a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory import (
    AlreadyExists,
    BlankPasswordPolicy,
    DeleteMode,
    DirectoryError,
    Domain,
    DomainType,
    FieldError,
    Lookup,
    NotFound,
    SQLDirectory,
)

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def directory(db_url: str, tmp_path: Path) -> Iterator[SQLDirectory]:
    """An open directory on this backend (a fresh database per test)."""
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as opened:
        yield opened


def test_add_get_and_list_a_domain_with_all_fields(directory: SQLDirectory) -> None:
    """A1/A2: every domain field is stored and read back."""
    added = directory.add_domain(
        "Example.COM",
        "/srv/mail/example",
        type="etrn",
        delivery_host="mx.example.net",
        home_node="node1",
        default_box_mb=100,
        max_users=50,
        session_send_mb=20,
        session_send_messages=30,
        max_message_size=10_000_000,
        blank_password=BlankPasswordPolicy.FILL,
        over_limit_notice="percent",
        over_limit_threshold=10,
    )
    expected = Domain(
        name="example.com",
        mail_dir="/srv/mail/example",
        type=DomainType.ETRN,
        delivery_host="mx.example.net",
        home_node="node1",
        default_box_mb=100,
        max_users=50,
        session_send_mb=20,
        session_send_messages=30,
        max_message_size=10_000_000,
        blank_password=BlankPasswordPolicy.FILL,
        over_limit_notice="percent",
        over_limit_threshold=10,
    )
    assert added == expected
    assert directory.get_domain("EXAMPLE.com") == expected
    assert directory.get_domain("example.com.") == expected
    assert directory.list_domains() == [expected]
    assert directory.get_domain("other.com") is None
    assert directory.get_domain("not a domain") is None


def test_text_values_from_the_cli_are_converted(directory: SQLDirectory) -> None:
    """M4: "relay", "25" and "yes" style values are accepted and typed."""
    domain = directory.add_domain(
        "relay.test", "/srv/relay", type="RELAY", delivery_host="10.0.0.1", max_users="25"
    )
    assert domain.type is DomainType.RELAY
    assert domain.max_users == 25


def test_idna_domain_names_are_stored_as_ascii(directory: SQLDirectory) -> None:
    """A1: an internationalised name is kept in its xn-- form and found by either form."""
    directory.add_domain("bücher.example", "/srv/buecher")
    assert directory.get_domain("BÜCHER.example").name == "xn--bcher-kva.example"
    assert directory.get_domain("xn--bcher-kva.example").name == "xn--bcher-kva.example"


def test_duplicate_domains_are_refused_in_any_case(directory: SQLDirectory) -> None:
    """A1: a domain name exists once, whatever its letter case."""
    directory.add_domain("example.com", "/srv/a")
    with pytest.raises(AlreadyExists, match=r"domain example.com already exists"):
        directory.add_domain("EXAMPLE.COM", "/srv/b")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "relay"}, "needs a delivery host"),
        ({"type": "backup"}, "non-zero backup priority"),
        ({"type": "sideways"}, "type must be one of normal, etrn, relay, backup, clustered"),
        ({"max_users": -1}, "max_users must be a whole number"),
        ({"max_users": "many"}, "max_users must be a whole number"),
        ({"catch_all": "bob"}, "and the user first, then set catch_all"),
        ({"colour": "blue"}, "has no field 'colour'"),
        ({"over_limit_notice": "percent", "over_limit_threshold": 120}, "0 to 100"),
        ({"blank_password": "maybe"}, "blank_password must be one of"),
        ({"delivery_host": "two words"}, "may not contain spaces"),
    ],
)
def test_bad_domain_fields_get_clear_messages(
    directory: SQLDirectory, fields: dict, message: str
) -> None:
    """M4: each bad value names the field and what is allowed; nothing is stored."""
    with pytest.raises(DirectoryError, match=message):
        directory.add_domain("example.com", "/srv/mail", **fields)
    assert directory.list_domains() == []


def test_backup_and_relay_domains_with_their_settings(directory: SQLDirectory) -> None:
    """A1: Backup needs a non-zero priority; Relay-to-host a delivery address."""
    backup = directory.add_domain("backup.test", "/srv/b", type="backup", backup_priority=20)
    assert (backup.type, backup.backup_priority) == (DomainType.BACKUP, 20)
    relay = directory.add_domain("relay.test", "/srv/r", type="relay", delivery_host="[10.1.1.1]")
    assert relay.delivery_host == "[10.1.1.1]"
    assert [d.name for d in directory.list_domains(type=DomainType.BACKUP)] == ["backup.test"]


def test_mail_directories_may_not_overlap(directory: SQLDirectory) -> None:
    """A1: two domains never share (or nest) a mail folder, so deleting one cannot hit the other."""
    directory.add_domain("a.test", "/srv/mail/a")
    for other in ("/srv/mail/a", "/srv/mail/a/b", "/srv/mail", "/srv/mail/x/../a"):
        with pytest.raises(AlreadyExists, match="overlaps"):
            directory.add_domain("b.test", other)
    directory.add_domain("b.test", "/srv/mail/b")
    with pytest.raises(AlreadyExists, match="overlaps"):
        directory.edit_domain("b.test", mail_dir="/srv/mail/a")


def test_list_domains_filters_by_name(directory: SQLDirectory) -> None:
    """M2: the domain list filters by a name substring and is sorted by name."""
    for name in ("zeta.test", "alpha.test", "alphabet.org"):
        directory.add_domain(name, f"/srv/{name}")
    assert [d.name for d in directory.list_domains("ALPHA")] == ["alpha.test", "alphabet.org"]
    assert [d.name for d in directory.list_domains()] == ["alpha.test", "alphabet.org", "zeta.test"]
    assert directory.list_domains("_") == []  # wildcards are literal


def test_edit_domain_changes_fields_and_checks_catch_all(directory: SQLDirectory) -> None:
    """A2: the catch-all and monitor accounts must be existing users of the domain."""
    directory.add_domain("example.com", "/srv/ex")
    with pytest.raises(FieldError, match=r"catch_all 'bob' is not a user of example.com"):
        directory.edit_domain("example.com", catch_all="bob")
    directory.add_user("bob@example.com")
    edited = directory.edit_domain("example.com", catch_all="Bob", monitor="bob", default_box_mb=5)
    assert (edited.catch_all, edited.monitor, edited.default_box_mb) == ("bob", "bob", 5)
    assert directory.edit_domain("example.com", catch_all="").catch_all == ""
    with pytest.raises(NotFound, match="not served here"):
        directory.edit_domain("nowhere.com", max_users=1)


def test_domain_aliases_resolve_to_the_real_domain(directory: SQLDirectory) -> None:
    """A3: mail.example.com -> example.com wherever a domain is looked up."""
    directory.add_domain("example.com", "/srv/ex", aliases=["mail.example.com"])
    directory.add_domain_alias("WWW.Example.com", "example.com")
    domain = directory.get_domain("mail.example.com")
    assert domain.name == "example.com"
    assert domain.aliases == ("mail.example.com", "www.example.com")
    assert directory.is_local_domain("www.example.com")
    directory.add_user("bob@mail.example.com")
    assert directory.get_user("BOB@www.example.com").address == "bob@example.com"
    directory.remove_domain_alias("www.example.com")
    assert directory.get_domain("www.example.com") is None
    with pytest.raises(NotFound, match="not a domain alias"):
        directory.remove_domain_alias("www.example.com")


def test_domain_alias_collisions_are_refused(directory: SQLDirectory) -> None:
    """A3: an alias may not duplicate a real domain or another alias; a domain not an alias."""
    directory.add_domain("example.com", "/srv/ex", aliases=["mail.example.com"])
    directory.add_domain("example.org", "/srv/org")
    with pytest.raises(AlreadyExists, match=r"example.org is a real domain"):
        directory.add_domain_alias("example.org", "example.com")
    with pytest.raises(AlreadyExists, match=r"already an alias of example.com"):
        directory.add_domain_alias("MAIL.example.com", "example.org")
    with pytest.raises(AlreadyExists, match=r"already an alias of example.com"):
        directory.add_domain("mail.example.com", "/srv/other")
    with pytest.raises(DirectoryError, match="alias of itself"):
        directory.add_domain_alias("example.org", "example.org")
    with pytest.raises(NotFound, match="not served here"):
        directory.add_domain_alias("x.example.net", "missing.example.net")
    assert directory.get_domain("example.org").aliases == ()


def test_edit_domain_replaces_its_aliases(directory: SQLDirectory) -> None:
    """A3: editing ``aliases`` sets the whole list."""
    directory.add_domain("example.com", "/srv/ex", aliases=["a.example.com", "b.example.com"])
    edited = directory.edit_domain("example.com", aliases=["c.example.com"])
    assert edited.aliases == ("c.example.com",)
    assert directory.get_domain("a.example.com") is None


def _mail_tree(root: Path) -> None:
    (root / "bob" / "cur").mkdir(parents=True)
    (root / "bob" / "cur" / "1.msg:2,S").write_text("Subject: kept\n\nhello\n")


@pytest.mark.parametrize("mode", list(DeleteMode))
def test_delete_domain_modes_and_the_mail_directory(
    directory: SQLDirectory, tmp_path: Path, mode: DeleteMode
) -> None:
    """A4: database only / archive (renamed with the date) / remove all mail."""
    root = tmp_path / "mail" / "example.com"
    directory.add_domain("example.com", str(root), aliases=["mail.example.com"])
    directory.add_user("bob@example.com", "pw")
    directory.add_alias("sales@example.com", ["bob"])
    _mail_tree(root)
    directory.delete_domain("example.com", mode)

    assert directory.get_domain("example.com") is None
    assert directory.get_domain("mail.example.com") is None
    assert directory.list_users() == [] and directory.list_aliases() == []
    assert directory.lookup_recipient("bob@example.com").status is Lookup.NOT_LOCAL
    left = sorted(p.name for p in root.parent.iterdir())
    if mode is DeleteMode.DATABASE:
        assert left == ["example.com"]
        assert (root / "bob" / "cur" / "1.msg:2,S").exists()
    elif mode is DeleteMode.ARCHIVE:
        assert len(left) == 1 and left[0].startswith("example.com.deleted-20")
        archived = root.parent / left[0] / "bob" / "cur" / "1.msg:2,S"
        assert archived.read_text() == "Subject: kept\n\nhello\n"
    else:
        assert left == []


def test_deleting_a_domain_again_starts_clean(directory: SQLDirectory, tmp_path: Path) -> None:
    """A4: a domain added again after deletion has none of the old users (cascade)."""
    directory.add_domain("example.com", str(tmp_path / "ex"))
    directory.add_user("bob@example.com")
    directory.delete_domain("example.com")
    directory.add_domain("example.com", str(tmp_path / "ex"))
    assert directory.get_user("bob@example.com") is None


def test_delete_refuses_an_alias_name_and_unknown_domains(directory: SQLDirectory) -> None:
    """A4: deleting by an alias's name would be a surprise: refused with the way out."""
    directory.add_domain("example.com", "/srv/ex", aliases=["mail.example.com"])
    with pytest.raises(DirectoryError, match=r"alias of example.com"):
        directory.delete_domain("mail.example.com")
    with pytest.raises(NotFound):
        directory.delete_domain("missing.com")
    assert directory.get_domain("example.com") is not None


def test_archive_twice_in_one_second_keeps_both(directory: SQLDirectory, tmp_path: Path) -> None:
    """A4: archiving never overwrites an earlier archive."""
    root = tmp_path / "ex"
    for _ in range(2):
        directory.add_domain("example.com", str(root))
        _mail_tree(root)
        directory.delete_domain("example.com", DeleteMode.ARCHIVE)
    assert len(list(tmp_path.glob("ex.deleted-*"))) == 2


def test_relative_mail_dir_is_inside_the_base_dir(directory: SQLDirectory, tmp_path: Path) -> None:
    """A1: a relative mail directory is relative to the data directory given to open()."""
    directory.add_domain("example.com", "mail/example.com")
    user = directory.add_user("bob@example.com")
    assert directory.user_maildir(user) == tmp_path / "mail" / "example.com" / "bob"
