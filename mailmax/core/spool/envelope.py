"""A queued message's envelope: who sent it, to whom, and how far delivery got.

The spool keeps it as JSON beside the raw message (``env/<id>.json``, see
:mod:`mailmax.core.spool.spool`), which may begin with the trace headers of its one local delivery
(:attr:`SpoolEnvelope.trace_bytes`). :meth:`SpoolEnvelope.from_json` checks every field, so a
damaged or hand-edited file is refused with a reason instead of being half understood.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from mailmax.core.spool.writer import QUEUE_ID

RECIPIENT_KINDS = ("local", "relay")
RECIPIENT_STATES = ("pending", "delivered", "deferred", "failed", "bounced")
#: States after which nothing more happens to a recipient.
FINAL_STATES = frozenset({"delivered", "bounced"})
#: Version of the envelope file format.
FORMAT_VERSION = 1

_encode = json.JSONEncoder(separators=(",", ":")).encode


def check_id(queue_id: str) -> str:
    """Return ``queue_id`` if it is a valid queue id (safe as a file name); else ValueError."""
    if not isinstance(queue_id, str) or not QUEUE_ID.fullmatch(queue_id):
        raise ValueError(f"invalid queue id {queue_id!r}")
    return queue_id


@dataclass
class SpoolRecipient:
    """One recipient of a queued message and its delivery state.

    ``kind`` is ``"local"`` (a mailbox here) or ``"relay"`` (another server); ``state`` is one of
    :data:`RECIPIENT_STATES`: ``failed`` means "permanently failed, bounce not sent yet",
    ``bounced`` that the bounce is queued (or needs none).
    """

    address: str
    kind: str = "local"
    mailbox: str = ""
    state: str = "pending"
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    #: ESMTP RCPT parameters as given (``NOTIFY``, ``ORCPT``), upper-case keys.
    params: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True when nothing more will happen to this recipient."""
        return self.state in FINAL_STATES


@dataclass
class SpoolEnvelope:
    """A queued message's envelope: who sent it, to whom, and how far delivery got."""

    id: str
    sender: str
    recipients: list[SpoolRecipient]
    received_at: float
    size: int = 0
    client_ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    session_id: str = ""
    #: ESMTP MAIL parameters as given (``RET``, ``ENVID``, ``BODY``, ``SMTPUTF8``), upper-case keys.
    params: dict[str, str] = field(default_factory=dict)
    #: Bytes at the start of the message file that are the trace headers of the delivery to
    #: the first recipient's mailbox (see :func:`mailmax.core.store.maildir.delivery_headers`),
    #: written at accept so that this delivery can hard-link the file into the Maildir. The
    #: message as received starts after them; every other use of the file skips them.
    trace_bytes: int = 0

    def to_json(self) -> bytes:
        """Serialise to JSON bytes (ASCII; undecodable characters survive as escapes)."""
        data = {"version": FORMAT_VERSION, **vars(self)}
        data["recipients"] = [vars(recipient) for recipient in self.recipients]
        return _encode(data).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> SpoolEnvelope:
        """Parse and validate JSON written by :meth:`to_json`; raise ``ValueError`` if invalid."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"envelope is not valid JSON: {exc}") from None
        fields = _validate(raw, _ENVELOPE_FIELDS, "envelope")
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported envelope format version {raw.get('version')!r}")
        recipients = [
            SpoolRecipient(**_validate(item, _RECIPIENT_FIELDS, f"recipient {index}"))
            for index, item in enumerate(fields.pop("recipients"))
        ]
        envelope = cls(recipients=recipients, **fields)
        check_id(envelope.id)
        return envelope


_REQUIRED = object()
_NUMBER = (int, float)
#: name -> (allowed types, default or _REQUIRED, allowed values or None)
_FieldSpec = dict[str, tuple[tuple[type, ...], Any, tuple[str, ...] | None]]
_ENVELOPE_FIELDS: _FieldSpec = {
    "id": ((str,), _REQUIRED, None),
    "sender": ((str,), _REQUIRED, None),
    "recipients": ((list,), _REQUIRED, None),
    "received_at": (_NUMBER, _REQUIRED, None),
    "size": ((int,), 0, None),
    "client_ip": ((str,), "", None),
    "helo": ((str,), "", None),
    "auth_user": ((str, type(None)), None, None),
    "session_id": ((str,), "", None),
    "params": ((dict,), {}, None),
    "trace_bytes": ((int,), 0, None),
}
_RECIPIENT_FIELDS: _FieldSpec = {
    "address": ((str,), _REQUIRED, None),
    "kind": ((str,), "local", RECIPIENT_KINDS),
    "mailbox": ((str,), "", None),
    "state": ((str,), "pending", RECIPIENT_STATES),
    "attempts": ((int,), 0, None),
    "next_attempt": (_NUMBER, 0.0, None),
    "last_error": ((str,), "", None),
    "params": ((dict,), {}, None),
}


def _validate(raw: Any, spec: _FieldSpec, what: str) -> dict[str, Any]:
    """Check the keys of a decoded JSON object against ``spec``; return the known fields."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object")
    out: dict[str, Any] = {}
    for name, (types, default, allowed) in spec.items():
        if name not in raw:
            if default is _REQUIRED:
                raise ValueError(f"{what}: {name!r} is missing")
            out[name] = dict(default) if isinstance(default, dict) else default
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"{what}: {name!r} has the wrong type ({type(value).__name__})")
        if allowed is not None and value not in allowed:
            raise ValueError(f"{what}: {name!r} is {value!r}; expected one of {allowed}")
        if isinstance(value, dict) and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError(f"{what}: {name!r} must map strings to strings")
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"{what}: {name!r} must not be negative")
        out[name] = float(cast(float, value)) if types == _NUMBER else value
    return out
