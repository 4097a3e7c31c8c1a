"""``mailmax config check`` and ``mailmax config show`` (M1, M4)."""

from __future__ import annotations

import json
import sqlite3
import tomllib

from click.testing import CliRunner

from mailmax.core.cli.configcmd import to_toml
from mailmax.core.cli.main import cli
from mailmax.core.tls import write_self_signed
from tests.test_cli_support import make_system, run_mailmax


def check(config) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(config)])
    return result.exit_code, result.stdout, result.stderr


def test_check_good_system(tmp_path):
    """M4: a system made by init checks clean, as text and as JSON."""
    system = make_system(tmp_path)
    code, out, err = check(system.config)
    assert (code, out, err) == (0, f"OK: {system.config}\n", "")
    report = system.json("config", "check")
    assert report == {"ok": True, "config": str(system.config), "problems": [], "warnings": []}


def test_check_warns_about_unverified_node_to_node_tls(tmp_path):
    """Q14, M4: a cluster node without tls_ca_file checks OK but is warned that node
    certificates go unchecked; with a CA file the warning is gone."""
    system = make_system(tmp_path)
    base = system.config.read_text()
    cluster = (
        '\n[cluster]\nnode = "a"\nsecret = "0123456789abcdef"\n'
        '[cluster.nodes.a]\naddress = "127.0.0.1"\nsmtp_port = 2525\n'
    )
    system.config.write_text(base + cluster)
    code, out, err = check(system.config)
    assert (code, out) == (0, f"OK: {system.config}\n")
    assert err.startswith("warning: [cluster] tls_ca_file is empty:")
    assert "could pose as a node and learn the shared secret" in err
    assert system.json("config", "check")["warnings"] == [err.strip().removeprefix("warning: ")]

    with_ca = cluster.replace("[cluster.nodes.a]", 'tls_ca_file = "ca.pem"\n[cluster.nodes.a]')
    system.config.write_text(base + with_ca)
    code, _out, err = check(system.config)
    assert code == 1 and "[cluster] tls_ca_file: cannot read" in err and "ca.pem" in err
    write_self_signed(system.config.parent / "ca.pem", tmp_path / "key.pem", ["localhost"])
    assert check(system.config) == (0, f"OK: {system.config}\n", "")


def test_check_unknown_key_names_the_key(tmp_path):
    """M4: a misspelt key is named, with what to do about it."""
    config = tmp_path / "mailmax.toml"
    config.write_text("[smtp]\nmax_recipient = 5\n")
    code, out, err = check(config)
    assert code == 1 and out == ""
    assert err.startswith(f"error: {config}: invalid configuration")
    assert "unknown key 'smtp.max_recipient': remove it or check its spelling" in err


def test_check_bad_value_says_what_is_allowed(tmp_path):
    """M4: a value outside the allowed set lists the allowed values."""
    config = tmp_path / "mailmax.toml"
    config.write_text('[tls]\nmin_version = "1.0"\n')
    code, _out, err = check(config)
    assert code == 1
    assert "tls.min_version: '1.0' is not allowed; use one of '1.2' or '1.3'" in err


def test_check_invalid_toml(tmp_path):
    config = tmp_path / "mailmax.toml"
    config.write_text("[smtp\n")
    code, _out, err = check(config)
    assert code == 1 and "not valid TOML" in err


def test_check_missing_file(tmp_path):
    """M4: a config path that does not exist says so and how to create one (installed command)."""
    missing = tmp_path / "nowhere.toml"
    out = run_mailmax("config", "check", "--config", str(missing))
    assert out.returncode == 1
    assert f"error: {missing} (from --config): no such config file" in out.stderr
    assert "mailmax init" in out.stderr


def test_check_reports_missing_tls_files_and_database(tmp_path):
    """M4: every problem is listed: missing certificate or key, a database that is not there."""
    system = make_system(tmp_path)
    (system.data_dir / "tls" / "key.pem").unlink()
    text = system.config.read_text().replace("mailmax.db", "typo.db")
    system.config.write_text(text)
    code, out, err = check(system.config)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: [tls]: key ")
    assert "key.pem not found" in lines[0]
    assert "typo.db does not exist" in lines[1]
    report = json.loads(
        CliRunner()
        .invoke(cli, ["--json", "--config", str(system.config), "config", "check"])
        .stdout
    )
    assert report["ok"] is False and len(report["problems"]) == 2


def test_check_reports_a_key_that_does_not_match_the_certificate(tmp_path):
    from mailmax.core.tls import write_self_signed

    system = make_system(tmp_path)
    other = tmp_path / "other"
    write_self_signed(other / "cert.pem", other / "key.pem", ["other.test"])
    (system.data_dir / "tls" / "key.pem").write_bytes((other / "key.pem").read_bytes())
    code, _out, err = check(system.config)
    assert code == 1
    assert "not a matching PEM certificate and key" in err


def test_check_reports_a_file_that_is_not_a_mailmax_database(tmp_path):
    system = make_system(tmp_path)
    db = system.data_dir / "mailmax.db"
    db.unlink()
    db.write_bytes(b"")  # an empty SQLite file: opens, but holds no tables
    code, _out, err = check(system.config)
    assert code == 1
    assert "holds no MailMax tables" in err


def test_check_reports_a_schema_newer_than_this_version(tmp_path):
    """M4: a database from a newer MailMax is named as such, with what to do."""
    system = make_system(tmp_path)
    with sqlite3.connect(system.data_dir / "mailmax.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00dfeed'")
    code, _out, err = check(system.config)
    assert code == 1
    assert "schema version f00dfeed" in err and "upgrade MailMax" in err


def test_check_warns_about_an_older_schema(tmp_path):
    """M4: a database of an older schema checks OK with a warning that it will be upgraded,
    on standard error and in the JSON report's warnings."""
    system = make_system(tmp_path)
    with sqlite3.connect(system.data_dir / "mailmax.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0007'")
    code, out, err = check(system.config)
    assert (code, out) == (0, f"OK: {system.config}\n")
    assert err.startswith("warning: sqlite:///") and "older schema version 0007" in err
    warnings = system.json("config", "check")["warnings"]
    assert warnings == [err.strip().removeprefix("warning: ")]


def test_show_prints_the_effective_configuration(tmp_path):
    """M1: defaults filled in; the TOML parses back to the same values as the JSON output."""
    system = make_system(tmp_path)
    shown = system.ok("config", "show")
    assert shown.startswith(f"# Effective configuration of {system.config}")
    as_toml = tomllib.loads(shown)
    as_json = system.json("config", "show")
    assert as_toml == as_json
    assert as_json["smtp"]["max_recipients"] == 100  # a default not written by init
    assert as_json["server"]["hostname"] == "mail.example.test"
    assert [item["service"] for item in as_json["listeners"]] == [
        "smtp",
        "submission",
        "smtps",
        "pop3",
        "pop3s",
        "imap",
        "imaps",
    ]


def test_show_hides_a_database_password(tmp_path):
    config = tmp_path / "mailmax.toml"
    config.write_text('[server]\ndatabase_url = "postgresql://mm:s3cret@db.test/mail"\n')
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert "postgresql://mm:***@db.test/mail" in result.output


def test_to_toml_writes_nested_tables_and_arrays():
    data = {
        "server": {"hostname": 'a "quoted" name', "grace": 1.5},
        "listeners": [{"service": "smtp", "port": 25}, {"service": "smtps", "port": 465}],
        "plugins": {
            "enabled": ["rbl"],
            "settings": {"rbl": {"servers": ["a.test"], "limits": {"x": 1}}, "my plugin": {}},
        },
        "empty": [],
    }
    assert tomllib.loads(to_toml(data)) == data


def test_check_refuses_bad_plugin_settings(tmp_path):
    """M4 + plugin platform: a plugin setting of the wrong type is named with what is allowed."""
    system = make_system(tmp_path)
    text = system.config.read_text()
    system.config.write_text(text + '\n[plugins.settings.forwarding]\nkeep_local_copy = "maybe"\n')
    code, out, err = check(system.config)
    assert code == 1 and out == ""
    assert "forwarding" in err and "keep_local_copy" in err


def test_check_refuses_an_unknown_plugin(tmp_path):
    system = make_system(tmp_path)
    text = system.config.read_text()
    assert "\nenabled = [" in text
    text = text.replace("\nenabled = [", '\nenabled = ["no_such_plugin", ', 1)
    system.config.write_text(text)
    code, _, err = check(system.config)
    assert code == 1 and "no_such_plugin" in err
