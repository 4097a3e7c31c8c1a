"""``mailmax user ...``: users, passwords, delete modes (A5, A6, A10, M2, M4)."""

from __future__ import annotations

import json

import pytest

from tests.test_cli_support import assert_archive_name, make_system, run_mailmax

SECRET = "correct horse battery"


@pytest.fixture
def system(tmp_path):
    return make_system(tmp_path)


def authenticates(system, address: str, password: str) -> bool:
    directory = system.directory()
    try:
        return directory.authenticate(address, password) is not None
    finally:
        directory.close()


def test_add_with_every_field_and_show(system):
    """A5: every user field set on the command line is stored and shown."""
    added = system.changed(
        "user", "add", "Ann@example.test", "--password", SECRET, "--first-name", "Ann",
        "--last-name", "Lee", "--type", "spamtrap", "--disk-limit-mb", "50",
        "--max-message-size", "200000", "--no-smtp-auth",
    )  # fmt: skip
    assert added["address"] == "ann@example.test"
    assert added["maildir"] == str(system.mail_dir() / "ann")
    shown = system.json("user", "show", "ann@example.test")
    expected = {
        "first_name": "Ann", "last_name": "Lee", "account_type": "spamtrap",
        "disk_limit_mb": 50, "max_message_size": 200000, "smtp_auth_disabled": True,
        "daily_send_messages": 0, "daily_send_mb": 0, "daily_limits_enabled": False,
        "virus_check": True, "password": "set", "clear_password_kept": False,
    }  # fmt: skip
    assert {k: shown[k] for k in expected} == expected
    text = system.ok("user", "show", "ann@example.test")
    assert "password:" in text and "set" in text


def test_passwords_never_appear_in_output(system):
    """A6: no command prints a password or its hash."""
    out = system.ok("user", "add", "bob@example.test", "--password", SECRET,
                    "--keep-clear-password")  # fmt: skip
    everything = out
    for args in (
        ("user", "show", "bob@example.test"),
        ("user", "list"),
        ("--json", "user", "show", "bob@example.test"),
        ("--json", "user", "list"),
    ):
        everything += system.ok(*args)
    assert SECRET not in everything
    assert "$argon2" not in everything
    shown = system.json("user", "show", "bob@example.test")
    assert shown["clear_password_kept"] is True and shown["password"] == "set"
    assert not {"password_hash", "hash", "clear_password"} & set(shown)


def test_password_from_stdin_and_passwd(system):
    """A6: --password-stdin reads one line; passwd changes it; the old one stops working."""
    system.ok("user", "add", "cat@example.test", "--password-stdin", input=SECRET + "\n")
    assert authenticates(system, "cat@example.test", SECRET)
    system.ok("user", "passwd", "cat@example.test", "--password-stdin", input="new secret 2\r\n")
    assert authenticates(system, "cat@example.test", "new secret 2")
    assert not authenticates(system, "cat@example.test", SECRET)
    result = system.json("user", "passwd", "cat@example.test", "--password", "third secret")
    assert result == {
        "ok": True,
        "changed": True,
        "message": "changed the password of cat@example.test",
        "object": {"address": "cat@example.test", "password": "set"},
    }
    assert authenticates(system, "cat@example.test", "third secret")


def test_password_required_without_a_terminal(system):
    """A6, M4: no password option and no TTY: refused, pointing at --password-stdin."""
    err = system.fails("user", "add", "dan@example.test")
    assert "--password-stdin" in err
    err = system.fails("user", "add", "dan@example.test", "--password-stdin", input="\n")
    assert "empty" in err and "--no-password" in err
    err = system.fails("user", "add", "dan@example.test", "--no-password", "--password", "x")
    assert "cannot be combined" in err
    assert system.fails("user", "show", "dan@example.test")


def test_blank_password_user(system):
    """A6: --no-password leaves the password blank; show says so."""
    system.ok("user", "add", "eve@example.test", "--no-password")
    assert system.json("user", "show", "eve@example.test")["password"] == "blank"
    system.ok("user", "passwd", "eve@example.test", "--password", SECRET)
    assert system.json("user", "show", "eve@example.test")["password"] == "set"
    system.ok("user", "passwd", "eve@example.test", "--no-password")
    assert system.json("user", "show", "eve@example.test")["password"] == "blank"


def test_list_filters(system):
    """M2: users listed by domain, name substring and account type."""
    system.ok("domain", "add", "two.test")
    system.ok("user", "add", "fred@two.test", "--password", SECRET, "--type", "disabled")
    system.ok("user", "add", "frieda@example.test", "--password", SECRET)
    addresses = [u["address"] for u in system.json("user", "list")]
    assert "fred@two.test" in addresses and "postmaster@example.test" in addresses
    assert [u["address"] for u in system.json("user", "list", "--domain", "two.test")] == [
        "fred@two.test"
    ]
    # sorted by domain, then name
    assert [u["address"] for u in system.json("user", "list", "--filter", "fr")] == [
        "frieda@example.test",
        "fred@two.test",
    ]
    assert [u["address"] for u in system.json("user", "list", "--type", "disabled")] == [
        "fred@two.test"
    ]
    table = system.ok("user", "list", "--domain", "two.test").splitlines()
    assert table[0].split() == ["ADDRESS", "NAME", "TYPE", "PASSWORD", "DISK", "MB"]
    assert table[1].split()[0] == "fred@two.test" and "disabled" in table[1]


def test_edit(system):
    """A5: edit changes only the options given; daily limits have an off switch."""
    system.ok("user", "add", "gil@example.test", "--password", SECRET)
    edited = system.changed("user", "edit", "gil@example.test", "--first-name", "Gil",
                            "--type", "disabled")  # fmt: skip
    assert (edited["first_name"], edited["account_type"]) == ("Gil", "disabled")
    assert edited["last_name"] == "" and edited["maildir"] == str(system.mail_dir() / "gil")
    assert system.fails("user", "edit", "gil@example.test").count("nothing to change") == 1
    err = system.fails("user", "edit", "nobody@example.test", "--first-name", "X")
    assert "nobody@example.test" in err and "mailmax user list" in err


def test_duplicate_and_invalid_users(system):
    """M4: a duplicate user and a name with a slash are refused with the reason."""
    err = system.fails("user", "add", "postmaster@example.test", "--password", SECRET)
    assert "postmaster@example.test" in err and "already" in err
    err = system.fails("user", "add", "a/b@example.test", "--password", SECRET)
    assert "'/'" in err


def _maildir_with_mail(system, name: str):
    system.ok("user", "add", f"{name}@example.test", "--password", SECRET)
    folder = system.mail_dir() / name
    (folder / "new").mkdir(parents=True, exist_ok=True)
    (folder / "new" / "1.msg").write_bytes(b"Subject: x\r\n\r\nx\r\n")
    return folder


def test_delete_modes(system):
    """A10: database keeps the Maildir, archive renames it with the date, remove deletes it."""
    kept = _maildir_with_mail(system, "keep")
    system.ok("user", "delete", "keep@example.test", "--mode", "database", "--yes")
    assert (kept / "new" / "1.msg").is_file()
    system.fails("user", "show", "keep@example.test")

    archived = _maildir_with_mail(system, "arch")
    result = system.changed("user", "delete", "arch@example.test", "--mode", "archive", "--yes")
    assert not archived.exists()
    (archive,) = [
        p for p in archived.parent.iterdir() if p.name.startswith("arch") and p != archived
    ]
    assert_archive_name(archive.name, "arch")
    assert (archive / "new" / "1.msg").is_file()
    assert result["archived_to"] == str(archive)

    removed = _maildir_with_mail(system, "rem")
    system.ok("user", "delete", "rem@example.test", "--mode", "remove", "--yes")
    assert not removed.exists()
    assert not [p for p in removed.parent.iterdir() if p.name.startswith("rem")]

    err = system.fails("user", "delete", "postmaster@example.test", "--mode", "remove")
    assert "add --yes" in err
    assert system.json("user", "show", "postmaster@example.test")


def test_installed_command_user_flow(tmp_path):
    """M1: the installed command adds a user with a password from stdin and shows it as JSON."""
    system = make_system(tmp_path)
    config = str(system.config)
    added = run_mailmax("--config", config, "user", "add", "hal@example.test",
                        "--password-stdin", input=SECRET + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert SECRET not in added.stdout + added.stderr
    shown = run_mailmax("--config", config, "user", "show", "hal@example.test", "--json")
    assert json.loads(shown.stdout)["password"] == "set"
    dup = run_mailmax("--config", config, "user", "add", "hal@example.test", "--no-password")
    assert dup.returncode == 1 and dup.stderr.startswith("error: ")
    assert authenticates(system, "hal@example.test", SECRET)


def test_options_not_enforced_yet_are_refused(system):
    """Settings the server would store and ignore are refused; nothing is written."""
    for option in (["--over-limit-notice", "mb"], ["--over-limit-threshold", "3"],
                   ["--home-node", "n2"], ["--type", "clustered"]):  # fmt: skip
        err = system.fails("domain", "add", "new.test", *option)
        assert "not enforced yet" in err and option[0] in err, option
        err = system.fails("domain", "edit", "example.test", *option)
        assert "not enforced yet" in err
    assert not system.mail_dir("new.test").exists()


def test_sending_limits_are_stored_with_a_warning_while_their_plugin_is_off(system):
    """A2/A5: the sending limits are set with the CLI; while the limits plugin is not enabled
    system-wide the admin is told that they hold only where it is switched on."""
    edited = run_mailmax("--config", str(system.config), "user", "edit", "admin@example.test",
                         "--daily-messages", "5")  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "the limits plugin is not enabled system-wide" in edited.stderr
    shown = json.loads(system.ok("user", "show", "admin@example.test", "--json"))
    assert (shown["daily_send_messages"], shown["daily_limits_enabled"]) == (5, True)
    edited = run_mailmax("--config", str(system.config), "domain", "edit", "example.test",
                         "--session-send-mb", "2", "--session-send-messages", "9")  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "mailmax plugin enable limits" in edited.stderr
    assert "--daily-mb" in system.ok("user", "edit", "--help")
    system.ok("plugin", "enable", "limits")
    edited = run_mailmax("--config", str(system.config), "user", "edit", "admin@example.test",
                         "--daily-mb", "5")  # fmt: skip
    assert edited.returncode == 0 and "limits plugin" not in edited.stderr


def test_stored_values_of_options_not_enforced_stay_readable(system):
    """Values stored before the refusal are still shown, and other edits leave them alone."""
    directory = system.directory()
    try:
        directory.edit_user("admin@example.test", daily_send_mb=7, virus_check=False)
        directory.edit_domain("example.test", session_send_mb=3, type="clustered")
    finally:
        directory.close()
    system.ok("user", "edit", "admin@example.test", "--first-name", "Ada")
    shown = system.json("user", "show", "admin@example.test")
    assert (shown["daily_send_mb"], shown["virus_check"], shown["first_name"]) == (7, False, "Ada")
    system.ok("domain", "edit", "example.test", "--max-users", "9")
    shown = system.json("domain", "show", "example.test")
    assert (shown["session_send_mb"], shown["type"], shown["max_users"]) == (3, "clustered", 9)


def test_virus_check_is_the_antivirus_switch_of_the_user(system):
    """V4: --no-virus-check switches the antivirus plugin off for the user, keeping its
    settings for the user; --virus-check switches it back on."""
    system.ok("plugin", "set", "antivirus", "notify_recipient=true", "--user", "admin@example.test")
    system.ok("user", "edit", "admin@example.test", "--no-virus-check")
    shown = json.loads(
        system.ok("plugin", "show", "antivirus", "--user", "admin@example.test", "--json")
    )
    assert shown["enabled"] is False and shown["settings"]["notify_recipient"]["value"] is True
    system.ok("user", "edit", "admin@example.test", "--virus-check")
    shown = json.loads(
        system.ok("plugin", "show", "antivirus", "--user", "admin@example.test", "--json")
    )
    assert shown["enabled"] is True
