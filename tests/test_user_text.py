"""Text a user reads carries no internal checklist IDs (like "A9", "Q7, Q8" or "P11").

The IDs name features in the project's checklist; tests may use them, nothing a user or a plugin
author reads may: ``--help`` of every command, ``twistd mailmax --help``, the docs, the plugin
READMEs and settings descriptions, the generated references, and the source they come from.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from mailmax.core import configdoc, hookdoc
from mailmax.core.cli.main import cli
from mailmax.core.pluginhost.discovery import BUILTIN_PLUGINS
from mailmax.core.tap import Options

ROOT = Path(__file__).resolve().parents[1]
FEATURE_ID = re.compile(r"\b[ALMPQRSV]\d{1,2}\b")


def found(text: str) -> list[str]:
    """The lines of ``text`` that name a feature ID."""
    return [line.strip() for line in text.splitlines() if FEATURE_ID.search(line)]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argument lists naming every command and group under ``group``."""
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


def test_the_pattern_finds_ids() -> None:
    assert found("Manage domains (A1-A4).\nno id here\nsee (Q7, Q8)") == [
        "Manage domains (A1-A4).",
        "see (Q7, Q8)",
    ]
    assert found("RFC 5321 4.1.1.4, 554 5.4.6, SHA256, IMAP4, POP3") == []


def test_help_of_every_command() -> None:
    runner = CliRunner()
    seen = 0
    for args in commands(cli):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert found(result.output) == [], args
        seen += 1
    assert seen > 30


def test_twistd_help() -> None:
    assert found(str(Options())) == []


def test_docs_and_readmes() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "mailmax" / "plugins").glob("*/README.md"))
    assert len(files) > 8
    for path in files:
        assert found(path.read_text()) == [], path


def test_generated_references() -> None:
    assert found(hookdoc.render()) == []
    assert found(configdoc.render()) == []


def test_plugin_settings_and_docstrings() -> None:
    for name, module_name in BUILTIN_PLUGINS.items():
        module = importlib.import_module(module_name)
        assert found(module.__doc__ or "") == [], name
        settings = getattr(module, "Settings", None)
        if settings is not None:
            assert found(str(settings.model_json_schema())) == [], name


def test_source_text() -> None:
    """Error messages, help and docstrings are written in the source: none may name an ID."""
    for base in ("mailmax", "twisted", "tac"):
        for path in sorted((ROOT / base).rglob("*")):
            if "tests" in path.relative_to(ROOT).parts:
                continue  # a plugin's own tests, like tests/, may name the features they cover
            if path.suffix in (".py", ".md", ".tac") and path.is_file():
                assert found(path.read_text()) == [], path


def test_twistd_help_names_every_service_and_the_config_order(tmp_path, monkeypatch) -> None:
    """`twistd mailmax --help` covers POP3 and IMAP4 and gives the order config_path uses."""
    from mailmax.core.tap import config_path

    text = " ".join(str(Options()).split())
    assert "POP3" in text and "IMAP4" in text and "SMTP" in text
    order = ["--config FILE", "DATA_DIR/mailmax.toml", "$MAILMAX_CONFIG", "./mailmax.toml",
             "/etc/mailmax/mailmax.toml"]  # fmt: skip
    places = [text.index(item) for item in order]
    assert places == sorted(places)
    monkeypatch.setenv("MAILMAX_CONFIG", str(tmp_path / "env.toml"))
    assert config_path("given.toml", str(tmp_path)) == Path("given.toml")
    assert config_path(None, str(tmp_path)) == tmp_path / "mailmax.toml"
    assert config_path(None, None) == tmp_path / "env.toml"


COMMAND = re.compile(r"mailmax((?: [a-z][a-z-]*)+)((?: --?[a-z][a-z-]*)*)")


def test_every_command_the_docs_name_exists() -> None:
    """Each `mailmax ...` command the docs and READMEs name, and its options, exist."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "mailmax" / "plugins").glob("*/README.md"))
    files += sorted((ROOT / "mailmax").rglob("*.py"))
    checked = 0
    for path in files:
        for match in COMMAND.finditer(path.read_text()):
            command: click.Command = cli
            for word in match.group(1).split():
                if not isinstance(command, click.Group):
                    break  # the rest are arguments
                assert word in command.commands, f"{path.name}: {match.group(0)!r}"
                command = command.commands[word]
            known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
            for option in match.group(2).split():
                assert option in known | {"-h", "--help"}, f"{path.name}: {match.group(0)!r}"
            checked += 1
    assert checked > 100


def test_the_twisted_page_names_tests_that_exist() -> None:
    """The README says what is Twisted's and what is MailMax's; docs/twisted.md's evidence
    points at regression tests that exist."""
    readme = (ROOT / "README.md").read_text()
    assert "## MailMax and Twisted" in readme and "docs/twisted.md" in readme
    assert readme.index("## MailMax and Twisted") > readme.index("bash .ci/run")
    page = (ROOT / "docs" / "twisted.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", page)
    assert len(named) > 15
    for path, test in named:
        source = (ROOT / path).read_text()
        assert not test or f"def {test}(" in source, (path, test)
