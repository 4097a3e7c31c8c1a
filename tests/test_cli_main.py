"""The `mailmax` command: entry point, global options, config discovery, exit codes (M1, M4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click
from click.testing import CliRunner

from mailmax.core.cli.context import SYSTEM_CONFIG, App
from mailmax.core.cli.main import MailmaxGroup, cli


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """Run the installed ``mailmax`` console script."""
    return subprocess.run(
        ["mailmax", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MAILMAX_CONFIG", None)
    return env


def test_installed_command_shows_help():
    """M1: the console script is installed and lists every command group."""
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for group in ("init", "config", "domain", "user", "alias"):
        assert group in out.stdout


def test_no_config_anywhere_says_what_was_tried(tmp_path):
    """M4: with no --config, $MAILMAX_CONFIG, ./mailmax.toml or /etc/mailmax the error lists all."""
    assert not SYSTEM_CONFIG.exists(), f"{SYSTEM_CONFIG} exists on this machine; remove it"
    out = run("domain", "list", cwd=tmp_path, env=clean_env())
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("error: no configuration file found")
    assert "MAILMAX_CONFIG is not set" in out.stderr
    assert str(tmp_path / "mailmax.toml") in out.stderr
    assert str(SYSTEM_CONFIG) in out.stderr
    assert "mailmax init --data-dir DIR" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_file_from_environment_names_its_origin(tmp_path):
    """M4: a $MAILMAX_CONFIG naming a missing file says where the name came from."""
    env = {**clean_env(), "MAILMAX_CONFIG": str(tmp_path / "nope.toml")}
    out = run("config", "check", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert f"error: {tmp_path / 'nope.toml'} (from $MAILMAX_CONFIG): no such config file" in (
        out.stderr
    )


def test_missing_file_from_option(tmp_path):
    """M4: --config before or after the command name, both reported with the path."""
    missing = tmp_path / "missing.toml"
    for args in (["--config", str(missing), "config", "check"],
                 ["config", "check", "--config", str(missing)]):  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert f"{missing} (from --config): no such config file" in result.output


def test_config_in_working_directory_is_found(tmp_path, monkeypatch):
    """./mailmax.toml is used when neither --config nor $MAILMAX_CONFIG is given."""
    (tmp_path / "mailmax.toml").write_text("[smtp]\nmax_hops = 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILMAX_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 1
    assert str((tmp_path / "mailmax.toml").resolve()) in result.output
    assert "smtp.max_hops" in result.output


def test_usage_errors_exit_2():
    """A missing required option is a usage error (exit 2) naming the option."""
    result = CliRunner().invoke(cli, ["domain", "delete", "example.com"])
    assert result.exit_code == 2
    assert "--mode" in result.output
    result = CliRunner().invoke(cli, ["domain", "delete", "example.com", "--mode", "burn"])
    assert result.exit_code == 2
    assert "'burn' is not one of 'database', 'archive', 'remove'" in result.output


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path, command
        if hasattr(command, "commands"):
            yield from _commands(command, path)


def test_every_command_and_option_is_documented():
    """M1: docs/cli.md names every command and every long option of each."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    missing = []
    for path, command in _commands(cli):
        if f"mailmax {' '.join(path)}" not in docs and f"### {' '.join(path[1:])}" not in docs:
            missing.append(" ".join(path))
        for param in command.params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("--") and name not in docs:
                    missing.append(f"{' '.join(path)} {name}")
    assert missing == []


def test_unexpected_errors_show_their_message_and_a_traceback_on_request():
    """M4: an unexpected exception is one `error:` line with its type and message; --debug adds
    the traceback."""

    @click.group(cls=MailmaxGroup)
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def group(ctx, debug):
        ctx.ensure_object(App).debug = debug

    @group.command()
    def boom():
        raise RuntimeError("the flux capacitor is empty")

    plain = CliRunner().invoke(group, ["boom"])
    assert plain.exit_code == 1
    assert plain.stderr == (
        "error: unexpected RuntimeError: the flux capacitor is empty "
        "(rerun with --debug for the traceback and report it)\n"
    )
    debug = CliRunner().invoke(group, ["--debug", "boom"])
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and 'raise RuntimeError("the flux' in debug.stderr
