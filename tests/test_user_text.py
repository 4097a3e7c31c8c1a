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
from mailmax.core.hooks import BUILTIN_PLUGINS
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
            if path.suffix in (".py", ".md", ".tac") and path.is_file():
                assert found(path.read_text()) == [], path
