"""Notes plugins attach to a message: kept in the spool envelope JSON, checked when read."""

from __future__ import annotations

import json

import pytest

from mailmax.core.model import MAX_NOTE, kept_notes
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient


def envelope(**fields: object) -> SpoolEnvelope:
    return SpoolEnvelope(
        id="AAAAAAAAAAAAAAAA-1",
        sender="a@example.org",
        recipients=[SpoolRecipient("b@example.test")],
        received_at=1.0,
        **fields,  # type: ignore[arg-type]
    )


def test_notes_survive_the_envelope_file() -> None:
    original = envelope(notes={"antivirus": "clean"})
    assert SpoolEnvelope.from_json(original.to_json()).notes == {"antivirus": "clean"}


def test_an_old_envelope_file_has_no_notes() -> None:
    data = json.loads(envelope().to_json())
    del data["notes"]
    assert SpoolEnvelope.from_json(json.dumps(data).encode()).notes == {}


def test_notes_that_are_not_text_are_refused() -> None:
    data = json.loads(envelope().to_json())
    data["notes"] = {"antivirus": 3}
    with pytest.raises(ValueError, match="'notes' must map strings to strings"):
        SpoolEnvelope.from_json(json.dumps(data).encode())


def test_kept_notes_are_bounded() -> None:
    kept = kept_notes({"p": "x" * (MAX_NOTE + 50)})
    assert kept == {"p": "x" * MAX_NOTE}
