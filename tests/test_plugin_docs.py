"""The plugin author guide documents every hook of the contract with its exact signature."""

from __future__ import annotations

import re
from pathlib import Path

from mailmax.core.hookdoc import hook_names, render, signature

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_every_hook_has_a_section_with_its_signature():
    text = GUIDE.read_text()
    for name in hook_names():
        assert f"### `{name}`" in text, f"docs/plugins.md has no section for {name}"
        assert signature(name) in text, f"docs/plugins.md shows another signature for {name}"


def test_no_section_for_a_hook_that_does_not_exist():
    documented = set(re.findall(r"^### `(mailmax_\w+)`", GUIDE.read_text(), re.M))
    assert documented == set(hook_names())


def test_hook_sections_match_the_contract_docstrings():
    text = GUIDE.read_text()
    body = text.split("<!-- hooks -->\n", 1)[1].split("<!-- /hooks -->", 1)[0]
    assert body == render(), "regenerate with: python -m mailmax.core.hookdoc"


def test_signatures_keep_their_types_and_every_type_comes_from_mailmax_plugin():
    """The reference shows each argument's type; authors import those types from one place."""
    import mailmax.plugin

    text = GUIDE.read_text()
    assert "mailmax_rcpt_to(session: Session, envelope: Envelope, recipient: Recipient," in text
    assert ") -> Route | None" in text
    known = {"Any", "None", "dict", "list", "str", "bytes", "int", "bool", "float"}
    for name in hook_names():
        for word in re.findall(r"\b[A-Za-z_]\w*\b", signature(name).split("(", 1)[1]):
            if word not in known and word[0].isupper():
                assert hasattr(mailmax.plugin, word), (name, word)
    assert "mailmax.core.outbound" not in text
