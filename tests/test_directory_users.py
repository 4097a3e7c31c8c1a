"""Users, user aliases, forwards, plugin overrides and login records (A5, A9, A7, A10, S5).

Each test runs against a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory import (
    AccountType,
    AlreadyExists,
    DeleteMode,
    DirectoryError,
    NotFound,
    SQLDirectory,
    User,
)

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def directory(db_url: str, tmp_path: Path) -> Iterator[SQLDirectory]:
    """An open directory on this backend (a fresh database per test)."""
    with SQLDirectory.open(db_url, base_dir=tmp_path, password_hasher=FAST) as opened:
        opened.add_domain("example.com", "mail/example.com", aliases=["mail.example.com"])
        yield opened


def test_add_and_get_a_user_with_all_fields(directory: SQLDirectory) -> None:
    """A5: every user field is stored; the domain may be given by its alias; any case."""
    added = directory.add_user(
        "Bob.Smith@MAIL.example.com",
        "s3cret",
        first_name="Bob",
        last_name="Smith",
        account_type="spamtrap",
        smtp_auth_disabled=True,
        disk_limit_mb=500,
        daily_send_messages=100,
        daily_send_mb=50,
        daily_limits_enabled="yes",
        max_message_size=1_000_000,
        virus_check=False,
    )
    expected = User(
        name="bob.smith",
        domain="example.com",
        first_name="Bob",
        last_name="Smith",
        account_type=AccountType.SPAMTRAP,
        smtp_auth_disabled=True,
        disk_limit_mb=500,
        daily_send_messages=100,
        daily_send_mb=50,
        daily_limits_enabled=True,
        max_message_size=1_000_000,
        virus_check=False,
        has_password=True,
        clear_password_kept=False,
    )
    assert added == expected
    assert added.address == "bob.smith@example.com"
    assert directory.get_user("BOB.SMITH@example.com") == expected
    assert directory.get_user("bob.smith@mail.example.com") == expected
    assert directory.get_user("nobody@example.com") is None
    assert directory.get_user("garbage") is None
    assert directory.get_user("a b@example.com") is None


def test_passwords_are_hashed_and_clear_text_only_on_request(directory: SQLDirectory) -> None:
    """A6: the database holds an argon2id hash; a clear copy only with keep_clear."""
    directory.add_user("hashed@example.com", "pw1")
    directory.add_user("clear@example.com", "pw2", keep_clear=True)
    directory.add_user("blank@example.com")
    with directory.engine.connect() as conn:
        rows = dict(
            (name, (hashed, clear))
            for name, hashed, clear in conn.exec_driver_sql(
                "SELECT name, password_hash, password_clear FROM users"
            )
        )
    assert rows["hashed"][0].startswith("$argon2id$") and rows["hashed"][1] is None
    assert rows["clear"][0].startswith("$argon2id$") and rows["clear"][1] == "pw2"
    assert rows["blank"] == (None, None)
    assert directory.get_user("clear@example.com").clear_password_kept
    assert not directory.get_user("blank@example.com").has_password


def test_set_password_changes_blanks_and_keeps_clear_choice(directory: SQLDirectory) -> None:
    """A6: set, blank and switch the clear-text copy of a password."""
    directory.add_user("bob@example.com", "old", keep_clear=True)
    directory.set_password("bob@example.com", "new")  # keep_clear stays on
    assert directory.clear_password("bob@example.com")[1] == "new"
    assert directory.authenticate("bob@example.com", "new") is not None
    assert directory.authenticate("bob@example.com", "old") is None
    directory.set_password("bob@example.com", "newer", keep_clear=False)
    assert directory.clear_password("bob@example.com") is None
    assert not directory.get_user("bob@example.com").clear_password_kept
    directory.set_password("bob@example.com", None)
    assert not directory.get_user("bob@example.com").has_password
    with pytest.raises(DirectoryError, match="control characters"):
        directory.set_password("bob@example.com", "two\nlines")
    with pytest.raises(NotFound, match="does not exist"):
        directory.set_password("nobody@example.com", "x")


def test_bad_user_names_and_fields_are_refused(directory: SQLDirectory) -> None:
    """A5/M4: names with / and friends, unknown fields and bad values get clear messages."""
    with pytest.raises(DirectoryError, match="'/'"):
        directory.add_user("a/b@example.com")
    with pytest.raises(DirectoryError, match="user@domain"):
        directory.add_user("no-domain")
    with pytest.raises(DirectoryError, match="has no field 'shoe_size'"):
        directory.add_user("bob@example.com", shoe_size=44)
    with pytest.raises(DirectoryError, match="account_type must be one of"):
        directory.add_user("bob@example.com", account_type="admin")
    with pytest.raises(NotFound, match="not served here"):
        directory.add_user("bob@elsewhere.org")
    assert directory.list_users() == []


def test_duplicate_users_and_alias_collisions_are_refused(directory: SQLDirectory) -> None:
    """A5/A9: a name is a user or an alias, never both; any letter case, any domain alias."""
    directory.add_user("bob@example.com")
    with pytest.raises(AlreadyExists, match=r"user bob@example\.com already exists"):
        directory.add_user("BOB@mail.example.com")
    directory.add_alias("sales@example.com", ["bob"])
    with pytest.raises(AlreadyExists, match=r"sales@example\.com is already an alias"):
        directory.add_user("Sales@example.com")
    with pytest.raises(AlreadyExists, match="may not collide with a user"):
        directory.add_alias("bob@mail.example.com", ["sales"])
    with pytest.raises(AlreadyExists, match=r"alias sales@example\.com already exists"):
        directory.add_alias("sales@example.com", ["bob"])


def test_domain_user_limit_and_relay_domains(directory: SQLDirectory) -> None:
    """A2: max_users limits a domain's users; relay domains have no mailboxes here."""
    directory.edit_domain("example.com", max_users=1)
    directory.add_user("one@example.com")
    with pytest.raises(DirectoryError, match="already has 1 users"):
        directory.add_user("two@example.com")
    directory.add_domain("relay.test", "/srv/relay", type="relay", delivery_host="mx.relay.test")
    with pytest.raises(DirectoryError, match="relay domain"):
        directory.add_user("bob@relay.test")


def test_edit_user_and_list_users(directory: SQLDirectory) -> None:
    """A5/M2: fields change; lists filter by domain, name and account type, sorted."""
    directory.add_domain("example.org", "/srv/org")
    for address in ("carol@example.com", "alice@example.com", "bob@example.org"):
        directory.add_user(address)
    edited = directory.edit_user("carol@example.com", account_type="disabled", disk_limit_mb=7)
    assert (edited.account_type, edited.disk_limit_mb, edited.enabled) == (
        AccountType.DISABLED,
        7,
        False,
    )
    assert [u.address for u in directory.list_users()] == [
        "alice@example.com",
        "carol@example.com",
        "bob@example.org",
    ]
    assert [u.name for u in directory.list_users("mail.example.com")] == ["alice", "carol"]
    assert [u.name for u in directory.list_users(name_filter="AR")] == ["carol"]
    assert [u.name for u in directory.list_users(account_type="disabled")] == ["carol"]
    with pytest.raises(DirectoryError, match="cannot be renamed"):
        directory.edit_user("carol@example.com", name="dave")
    with pytest.raises(DirectoryError, match="set_password"):
        directory.edit_user("carol@example.com", has_password=False)
    with pytest.raises(NotFound):
        directory.edit_user("zed@example.com", first_name="Z")
    with pytest.raises(NotFound):
        directory.list_users("nowhere.org")


def _mailbox(directory: SQLDirectory, address: str) -> Path:
    root = directory.user_maildir(directory.get_user(address))
    for sub in ("cur", "new", "tmp", ".Sent/cur"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "1.eml").write_text("Subject: hi\n\nmail\n")
    return root


@pytest.mark.parametrize("mode", list(DeleteMode))
def test_delete_user_modes_and_the_maildir(
    directory: SQLDirectory, tmp_path: Path, mode: DeleteMode
) -> None:
    """A10: database only / archive the Maildir with the date / remove the Maildir."""
    directory.add_user("bob@example.com", "pw")
    directory.add_user("carol@example.com")
    directory.edit_domain("example.com", catch_all="bob", monitor="bob")
    root = _mailbox(directory, "bob@example.com")
    assert root == tmp_path / "mail" / "example.com" / "bob"
    _mailbox(directory, "carol@example.com")
    directory.delete_user("BOB@mail.example.com", mode)

    assert directory.get_user("bob@example.com") is None
    domain = directory.get_domain("example.com")
    assert (domain.catch_all, domain.monitor) == ("", "")  # no catch-all any more
    left = sorted(p.name for p in root.parent.iterdir())
    if mode is DeleteMode.DATABASE:
        assert left == ["bob", "carol"]
    elif mode is DeleteMode.ARCHIVE:
        assert left[1] == "carol" and left[0].startswith("bob.deleted-20")
        assert (root.parent / left[0] / "new" / "1.eml").read_text() == "Subject: hi\n\nmail\n"
    else:
        assert left == ["carol"]
    assert (root.parent / "carol" / "new" / "1.eml").exists()
    with pytest.raises(NotFound):
        directory.delete_user("bob@example.com")


def test_a_failed_archive_keeps_the_user(directory: SQLDirectory) -> None:
    """A10: when the mail folder cannot be moved, nothing is deleted and the message says why."""
    directory.add_user("bob@example.com")
    root = _mailbox(directory, "bob@example.com")
    with _unwritable(root.parent), pytest.raises(DirectoryError, match="nothing was deleted"):
        directory.delete_user("bob@example.com", DeleteMode.ARCHIVE)
    assert directory.get_user("bob@example.com") is not None
    assert (root / "new" / "1.eml").exists()


@contextlib.contextmanager
def _unwritable(folder: Path) -> Iterator[None]:
    """No entry of ``folder`` may be renamed (root ignores modes: use the immutable flag)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"chattr +i is needed to test this as root: {done.stderr}", pytrace=False)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_user_aliases_crud(directory: SQLDirectory) -> None:
    """A9: aliases point to local or remote addresses; bare names stay in the alias's domain."""
    directory.add_user("bob@example.com")
    directory.add_alias("Sales@mail.example.com", ["Bob", "Joe@Remote.ORG", "bob@example.com"])
    assert directory.get_alias("sales@example.com") == ["bob@example.com", "Joe@remote.org"]
    assert directory.get_alias("SALES@mail.example.com") == ["bob@example.com", "Joe@remote.org"]
    directory.add_alias("info@example.com", "bob, sales")
    assert directory.list_aliases() == [
        ("info@example.com", ["bob@example.com", "sales@example.com"]),
        ("sales@example.com", ["bob@example.com", "Joe@remote.org"]),
    ]
    assert directory.list_aliases("mail.example.com")[0][0] == "info@example.com"
    directory.edit_alias("info@example.com", ["x@remote.org"])
    assert directory.get_alias("info@example.com") == ["x@remote.org"]
    directory.delete_alias("info@example.com")
    assert directory.get_alias("info@example.com") is None
    with pytest.raises(NotFound, match="is not an alias"):
        directory.delete_alias("info@example.com")
    with pytest.raises(DirectoryError, match="cannot point to itself"):
        directory.add_alias("loop@example.com", ["loop"])
    with pytest.raises(DirectoryError, match="at least one target"):
        directory.add_alias("empty@example.com", [])
    with pytest.raises(NotFound, match="not served here"):
        directory.add_alias("x@remote.org", ["bob@example.com"])
    with pytest.raises(DirectoryError, match="not an address"):
        directory.add_alias("bad@example.com", ["a b@remote.org"])


def test_forwards(directory: SQLDirectory) -> None:
    """A7 storage: enabled flag, local or remote targets, keep a local copy or not."""
    directory.add_user("bob@example.com")
    directory.add_user("carol@example.com")
    assert directory.get_forward("bob@example.com") is None
    directory.set_forward("bob@example.com", ["carol", "Ext@Remote.org"], keep_local_copy=False)
    assert directory.get_forward("BOB@mail.example.com") == (
        True,
        ["carol@example.com", "Ext@remote.org"],
        False,
    )
    directory.set_forward("bob@example.com", [], enabled=False)
    assert directory.get_forward("bob@example.com") == (False, [], True)
    with pytest.raises(DirectoryError, match="at least one target"):
        directory.set_forward("bob@example.com", [])
    with pytest.raises(DirectoryError, match="cannot point to itself"):
        directory.set_forward("bob@example.com", ["bob@mail.example.com"])
    directory.delete_forward("bob@example.com")
    assert directory.get_forward("bob@example.com") is None
    with pytest.raises(NotFound):
        directory.set_forward("nobody@example.com", ["x@y.org"])


def test_plugin_overrides_per_domain_and_user(directory: SQLDirectory) -> None:
    """Plugin platform storage: on/off and settings per domain and per user; cascades."""
    directory.add_user("bob@example.com")
    directory.set_plugin_override("rbl", "domain", "mail.example.com", enabled=False)
    directory.set_plugin_override(
        "rbl", "user", "BOB@example.com", settings={"lists": ["zen.test"], "score": 2}
    )
    directory.set_plugin_override("tarpit", "user", "bob@example.com", enabled=True)
    assert directory.get_plugin_overrides("rbl") == {
        ("domain", "example.com"): (False, {}),
        ("user", "bob@example.com"): (None, {"lists": ["zen.test"], "score": 2}),
    }
    directory.set_plugin_override("rbl", "domain", "example.com", enabled=True, settings={"a": 1})
    assert directory.get_plugin_overrides("rbl")[("domain", "example.com")] == (True, {"a": 1})
    directory.set_plugin_override("rbl", "domain", "example.com")  # neither: removed
    assert ("domain", "example.com") not in directory.get_plugin_overrides("rbl")
    with pytest.raises(DirectoryError, match="'domain' or 'user'"):
        directory.set_plugin_override("rbl", "system", "x")
    with pytest.raises(DirectoryError, match="JSON"):
        directory.set_plugin_override("rbl", "domain", "example.com", settings={"x": object()})
    with pytest.raises(NotFound):
        directory.set_plugin_override("rbl", "user", "nobody@example.com", enabled=True)
    directory.delete_user("bob@example.com")
    assert directory.get_plugin_overrides("rbl") == {}
    assert directory.get_plugin_overrides("tarpit") == {}


def test_login_records_keep_the_newest(directory: SQLDirectory) -> None:
    """S5: logins are tracked per user (service, IP, time); only the newest N are kept."""
    directory.add_user("bob@example.com")
    assert directory.last_login("bob@example.com") is None
    for n in range(directory.LOGINS_KEPT + 5):
        directory.record_login("bob@mail.example.com", "imap", f"192.0.2.{n}")
    service, ip, when = directory.last_login("bob@example.com")
    assert (service, ip) == ("imap", f"192.0.2.{directory.LOGINS_KEPT + 4}")
    assert when > 1_700_000_000
    with directory.engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM logins").scalar_one()
    assert count == directory.LOGINS_KEPT
    directory.record_login("ghost@example.com", "pop3", "192.0.2.1")  # ignored, no error
    assert directory.last_login("ghost@example.com") is None
