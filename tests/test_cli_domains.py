"""``mailmax domain ...``: domains and domain aliases (A1, A2, A3, A4, M2, M4)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from mailmax.core.cli.main import cli
from tests.test_cli_support import assert_archive_name, make_system, run_mailmax


@pytest.fixture
def system(tmp_path):
    return make_system(tmp_path)


def put_mail(folder, name="1.msg"):
    """A message file in a Maildir under ``folder``."""
    (folder / "new").mkdir(parents=True, exist_ok=True)
    (folder / "new" / name).write_bytes(b"Subject: hi\r\n\r\nhello\r\n")


def test_add_list_show_edit(system):
    """A1, A2: a domain with its settings, shown as a table, a record and JSON."""
    out = system.ok("domain", "add", "Shop.Test", "--type", "backup", "--backup-priority", "20",
                    "--max-users", "5", "--blank-password", "fill")  # fmt: skip
    assert out.strip().startswith("added domain shop.test")
    assert system.mail_dir("shop.test").is_dir()
    table = system.ok("domain", "list").splitlines()
    assert table[0].split() == ["DOMAIN", "TYPE", "ALIASES", "MAIL", "DIRECTORY"]
    assert [line.split()[:2] for line in table[1:]] == [
        ["example.test", "normal"],
        ["shop.test", "backup"],
    ]
    listed = system.json("domain", "list", "--type", "backup")
    assert [d["name"] for d in listed] == ["shop.test"]
    assert listed[0]["mail_dir"] == str(system.mail_dir("shop.test"))
    assert [d["name"] for d in system.json("domain", "list", "--filter", "shop")] == ["shop.test"]
    assert system.ok("domain", "list", "--filter", "nothing-like-this") == "no domains\n"

    shown = system.json("domain", "show", "shop.test")
    assert (shown["type"], shown["backup_priority"], shown["max_users"]) == ("backup", 20, 5)
    assert shown["blank_password"] == "fill" and shown["users"] == 0
    text = system.ok("domain", "show", "shop.test")
    assert re.search(r"^backup priority: +20$", text, re.M)

    edited = system.changed("domain", "edit", "shop.test", "--type", "relay", "--delivery-host",
                         "mx.inside.test", "--max-message-size", "1000000")  # fmt: skip
    assert (edited["type"], edited["delivery_host"]) == ("relay", "mx.inside.test")
    assert edited["max_message_size"] == 1000000
    assert edited["max_users"] == 5  # untouched fields stay


def test_catch_all_must_be_an_existing_user(system):
    """A2: the catch-all account must exist; the error says so."""
    err = system.fails("domain", "edit", "example.test", "--catch-all", "nobody")
    assert "nobody" in err
    assert (
        system.changed("domain", "edit", "example.test", "--catch-all", "postmaster")["catch_all"]
        == "postmaster"
    )


def test_edit_without_options_is_refused(system):
    err = system.fails("domain", "edit", "example.test")
    assert "nothing to change" in err


def test_unknown_domain_suggests_the_list(system):
    """M4: every command naming a missing domain points at `mailmax domain list`."""
    for args in (["domain", "show", "nope.test"],
                 ["domain", "edit", "nope.test", "--max-users", "3"],
                 ["domain", "delete", "nope.test", "--mode", "database", "--yes"],
                 ["user", "add", "x@nope.test", "--password", "a long secret"],
                 ["user", "list", "--domain", "nope.test"]):  # fmt: skip
        err = system.fails(*args)
        assert err.startswith("error: ") and "nope.test" in err, args
        assert "mailmax domain list" in err, (args, err)


def test_duplicate_and_invalid_domains(system):
    """M4: a duplicate domain and a malformed name are refused with the reason."""
    err = system.fails("domain", "add", "example.test")
    assert "example.test" in err and "already" in err
    assert system.mail_dir().is_dir()  # the failed add left the existing directory alone
    err = system.fails("domain", "add", "bad_domain!.test")
    assert "bad_domain!.test" in err
    err = system.fails("domain", "add", "backup.test", "--type", "backup")
    assert "backup priority" in err
    assert not system.mail_dir("backup.test").exists()  # nothing left behind


def test_domain_aliases(system):
    """A3: an alias is another name of a domain; it may not duplicate a real domain."""
    system.ok("domain", "alias", "add", "mail.example.test", "example.test")
    assert system.json("domain", "alias", "list") == [
        {"alias": "mail.example.test", "domain": "example.test"}
    ]
    assert system.json("domain", "show", "mail.example.test")["name"] == "example.test"
    assert "mail.example.test" in system.ok("domain", "list")
    system.ok("domain", "add", "other.test")
    err = system.fails("domain", "alias", "add", "other.test", "example.test")
    assert "other.test" in err
    system.ok("domain", "alias", "delete", "mail.example.test")
    assert system.ok("domain", "alias", "list") == "no domain aliases\n"


def test_delete_database_mode_keeps_the_mail(system):
    """A4: database mode removes the records and leaves the mail directory alone."""
    system.ok("domain", "add", "keep.test")
    system.ok("user", "add", "ann@keep.test", "--password", "a long secret")
    put_mail(system.mail_dir("keep.test") / "ann")
    result = system.changed("domain", "delete", "keep.test", "--mode", "database", "--yes")
    assert result["mode"] == "database"
    assert (system.mail_dir("keep.test") / "ann" / "new" / "1.msg").is_file()
    assert [d["name"] for d in system.json("domain", "list")] == ["example.test"]
    assert system.json("user", "list", "--domain", "example.test")  # other domains untouched
    system.fails("user", "show", "ann@keep.test")


def test_delete_archive_mode_renames_with_the_date(system):
    """A4: archive mode renames the mail directory with today's date."""
    system.ok("domain", "add", "old.test")
    system.ok("user", "add", "ann@old.test", "--password", "a long secret")
    put_mail(system.mail_dir("old.test") / "ann")
    out = system.ok("domain", "delete", "old.test", "--mode", "archive", "--yes")
    assert not system.mail_dir("old.test").exists()
    (archive,) = [p for p in system.mail_dir().parent.iterdir() if p.name.startswith("old.test")]
    assert_archive_name(archive.name, "old.test")
    assert (archive / "ann" / "new" / "1.msg").is_file()
    assert str(archive) in out


def test_delete_remove_mode_deletes_the_mail(system):
    """A4: remove mode deletes the mail directory and everything in it."""
    system.ok("domain", "add", "gone.test")
    system.ok("user", "add", "ann@gone.test", "--password", "a long secret")
    put_mail(system.mail_dir("gone.test") / "ann")
    system.ok("domain", "delete", "gone.test", "--mode", "remove", "--yes")
    assert not system.mail_dir("gone.test").exists()
    assert not [p for p in system.mail_dir().parent.iterdir() if p.name.startswith("gone.test")]


def test_delete_without_yes_and_without_a_terminal_is_refused(system):
    """A4: nothing is deleted unless confirmed; without a TTY, --yes is the confirmation."""
    err = system.fails("domain", "delete", "example.test", "--mode", "remove")
    assert "refusing to delete domain example.test" in err and "add --yes" in err
    assert system.mail_dir().is_dir()
    assert [d["name"] for d in system.json("domain", "list")] == ["example.test"]


def test_installed_command_domain_flow(tmp_path):
    """M1: the installed command adds, lists (JSON) and deletes a domain."""
    system = make_system(tmp_path)
    config = str(system.config)
    added = run_mailmax("--config", config, "domain", "add", "flow.test")
    assert added.returncode == 0, added.stderr
    listed = run_mailmax("--config", config, "--json", "domain", "list")
    assert "flow.test" in [d["name"] for d in json.loads(listed.stdout)]
    gone = run_mailmax("--config", config, "domain", "delete", "flow.test", "--mode", "remove")
    assert gone.returncode == 1 and "add --yes" in gone.stderr
    gone = run_mailmax(
        "--config", config, "domain", "delete", "flow.test", "--mode", "remove", "--yes"
    )
    assert gone.returncode == 0, gone.stderr


def test_one_domain_name_rule_everywhere(system, tmp_path):
    """A single-label name is refused by `domain add`, `domain alias add` and `init` alike."""
    for args in (["domain", "add", "nodots"], ["domain", "alias", "add", "nodots", "example.test"]):
        err = system.fails(*args)
        assert "'nodots' has a single label; a mail domain needs at least two" in err, args
    assert not system.mail_dir("nodots").exists()
    result = CliRunner().invoke(
        cli, ["init", "--data-dir", str(tmp_path / "other"), "--domain", "nodots",
              "--non-interactive"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "'nodots' has a single label; a mail domain needs at least two" in result.stderr


def test_catch_all_as_users_type_it(system):
    """--catch-all and --monitor take a user name or the user's full address in the domain."""
    system.ok("domain", "alias", "add", "mail.example.test", "example.test")
    edited = system.changed(
        "domain", "edit", "example.test", "--catch-all", "postmaster@example.test"
    )
    assert edited["catch_all"] == "postmaster"
    shown = system.changed("domain", "edit", "example.test", "--monitor", "Admin@Mail.Example.Test")
    assert shown["monitor"] == "admin"
    err = system.fails("domain", "edit", "example.test", "--catch-all", "root@other.test")
    assert err == (
        "error: --catch-all 'root@other.test' is not an address of example.test: the account "
        "must be a user of the domain itself\n"
    )
    err = system.fails("domain", "edit", "example.test", "--catch-all", "ghost@example.test")
    assert "--catch-all 'ghost' is not a user of example.test" in err


def test_errors_name_the_options(system):
    """A refused value names the option that sets it, never an internal field name."""
    err = system.fails("domain", "add", "relay.test", "--type", "relay")
    assert "give --delivery-host (e.g. mail.example.net)" in err and "delivery_host" not in err
    err = system.fails("domain", "add", "backup.test", "--type", "backup")
    assert "give --backup-priority (e.g. 20)" in err and "backup_priority" not in err
    err = system.fails("domain", "edit", "example.test", "--delivery-host", "a b")
    assert err.startswith("error: --delivery-host may not contain spaces")
    err = system.fails("user", "edit", "admin@example.test", "--first-name", "a\x01b")
    assert err.startswith("error: --first-name contains control characters")
