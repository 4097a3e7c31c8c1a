"""Notes a message whose subject is "tag me" when it arrives, and files each copy of a noted
message in the folder ``Tagged`` at delivery: shows that a note made on the node that received
a message reaches the node that delivers it."""

from __future__ import annotations

from mailmax.core.hookspecs import hookimpl


@hookimpl
def mailmax_data(envelope, message):
    """Note the message when its subject says so; no verdict."""
    if b"\nSubject: tag me" in message:
        envelope.notes["notetag"] = "Tagged"
    return None


@hookimpl
def mailmax_deliver(mailbox, envelope):
    """The folder the note names, or no opinion."""
    return envelope.notes.get("notetag") or None
