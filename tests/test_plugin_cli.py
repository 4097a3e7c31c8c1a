"""`mailmax plugin ...` without a server: system scope in the config file, checks, refusals (M4)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from mailmax.core.cli.main import cli
from mailmax.core.directory.sql import SQLDirectory

CONFIG = """# my mail server
[server]
hostname = "mail.example.test"

[plugins]
# hook order
enabled = ["aliases", "forwarding"]
"""


def setup(tmp_path: Path) -> Path:
    path = tmp_path / "mailmax.toml"
    path.write_text(CONFIG)
    with SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}", base_dir=tmp_path) as d:
        d.add_domain("example.test", "mail/example.test")
        d.add_user("ann@example.test", "ann-password-1")
    return path


def run(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_system_scope_edits_the_config_file_keeping_comments(tmp_path: Path) -> None:
    """System enable/disable/set/unset edit [plugins] and keep the rest of the file."""
    path = setup(tmp_path)
    code, out, _ = run(path, "plugin", "enable", "monitor")
    assert code == 0 and "mailmax reload" in out
    code, _, _ = run(path, "plugin", "disable", "aliases")
    assert code == 0
    code, _, _ = run(path, "plugin", "set", "forwarding", "srs_max_age_days=30")
    assert code == 0
    text = path.read_text()
    assert text.startswith("# my mail server") and "# hook order" in text
    data = tomllib.loads(text)
    assert data["plugins"]["enabled"] == ["forwarding", "monitor"]
    assert data["plugins"]["settings"]["forwarding"] == {"srs_max_age_days": 30}
    code, out, _ = run(path, "plugin", "show", "forwarding")
    assert "srs_max_age_days = 30    (system)" in out and "srs = true    (default)" in out
    code, _, _ = run(path, "plugin", "unset", "forwarding", "srs_max_age_days")
    assert code == 0 and "srs_max_age_days" not in path.read_text()


def test_bad_values_and_scopes_are_refused_with_what_is_allowed(tmp_path: Path) -> None:
    """M4: a type error, an unknown key, a scope the plugin does not have, an unknown plugin."""
    path = setup(tmp_path)
    before = path.read_text()
    code, _, err = run(path, "plugin", "set", "forwarding", "srs_max_age_days=0")
    assert code == 1
    assert "srs_max_age_days=0 is not allowed" in err and ">= 1, <= 1000" in err
    assert path.read_text() == before
    code, _, err = run(
        path, "plugin", "set", "forwarding", "colour=blue", "--user", "ann@example.test"
    )
    assert code == 1 and "has no setting 'colour'" in err and "keep_local_copy" in err
    code, _, err = run(path, "plugin", "enable", "aliases", "--user", "ann@example.test")
    assert code == 1 and "cannot be set per user: it works per system, domain" in err
    code, _, err = run(path, "plugin", "enable", "nosuchplugin", "--domain", "example.test")
    assert code == 1 and "no such plugin" in err and "forwarding" in err
    code, _, err = run(path, "plugin", "show", "forwarding", "--user", "zed@example.test")
    assert code == 1 and "does not exist" in err


def test_check_finds_a_bad_override_and_list_shows_origins(tmp_path: Path) -> None:
    """`plugin check` validates what a reload would; `plugin list --json` tells origins."""
    path = setup(tmp_path)
    code, out, _ = run(path, "plugin", "check")
    assert code == 0 and out.startswith("OK")
    with SQLDirectory.open(f"sqlite:///{tmp_path / 'mailmax.db'}") as d:
        d.set_plugin_override("forwarding", "user", "ann@example.test", settings={"srs": "maybe"})
    code, _, err = run(path, "plugin", "check")
    assert code == 1 and "forwarding (user ann@example.test): srs='maybe'" in err
    code, out, _ = run(path, "--json", "plugin", "list", "--hooks")
    data = json.loads(out)
    rows = {row["name"]: row for row in data["plugins"]}
    assert rows["aliases"]["status"] == "enabled" and rows["aliases"]["origin"].startswith(
        "built-in"
    )
    assert rows["spamtrap"]["status"] == "not loaded"
    assert data["hooks"]["mailmax_expand_recipient"] == ["forwarding"]


def test_two_system_switches_before_a_reload_both_hold(tmp_path: Path) -> None:
    """P11: a long-running admin service (the API) switching two plugins on system-wide before
    any reload keeps both: each switch starts from the file, not from the settings it was
    started with."""
    from mailmax.core.config import load
    from mailmax.core.services.actor import Actor
    from mailmax.core.services.plugins import PluginAdmin

    config = setup(tmp_path)
    started_with = load(config)
    directory = SQLDirectory.open(started_with.database_url)
    try:
        admin = PluginAdmin(started_with, directory, Actor.local())
        admin.switch("etrn", None, None, True)
        admin.switch("housekeeping", None, None, True)
    finally:
        directory.close()
    enabled = load(config).plugins.enabled
    assert "etrn" in enabled and "housekeeping" in enabled
