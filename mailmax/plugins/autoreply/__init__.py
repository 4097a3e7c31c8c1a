"""autoreply: a user's auto-responder ("out of office"), by the rules of RFC 3834.

Set per user (``mailmax autoreply set USER --subject ... --text ...``, or ``mailmax plugin set
autoreply active=true subject=... --user USER``): whether it answers, the from address and real
name, the subject and text, optional first and last days, and how many days pass before a
sender is answered again. The reply goes to the envelope sender from the null sender through
the outbound queue; mailing lists, automatic mail, the null sender and mail not addressed to
the user directly get none (see :mod:`.reply`, which the rules' auto-respond action uses too).
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import field_validator, model_validator
from twisted.internet import defer

from mailmax.plugin import (
    Envelope,
    Field,
    PluginHost,
    PluginSettings,
    current_host,
    hookimpl,
)
from mailmax.plugins.autoreply.reply import (
    AutoReply,
    ReplyOutcome,
    check_address,
    check_header_text,
    send_auto_reply,
)

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain", "user")
#: Longest reply text, in characters.
MAX_TEXT = 10_000

__all__ = ["SCOPES", "AutoReply", "ReplyOutcome", "Settings", "send_auto_reply"]


class Settings(PluginSettings):
    """A user's auto-responder."""

    active: bool = Field(False, description="Answer the user's mail automatically.")
    from_address: str = Field(
        "", description="Address the replies come from; empty: the user's own."
    )
    real_name: str = Field("", description="Name shown with the from address.")
    subject: str = Field("", description='Subject of the replies; empty: "Auto: " and theirs.')
    text: str = Field("", description="Text of the replies.")
    start_date: str = Field(
        "", description="First day to answer (YYYY-MM-DD, server time); empty: at once."
    )
    end_date: str = Field(
        "", description="Last day to answer (YYYY-MM-DD, server time); empty: no end."
    )
    days: int = Field(7, ge=1, le=365, description="Days before a sender is answered again.")

    @field_validator("real_name", "subject")
    @classmethod
    def _one_line(cls, value: str, info: Any) -> str:
        return check_header_text(info.field_name.replace("_", " "), value)

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address("from address", value.strip())

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if len(value) > MAX_TEXT:
            raise ValueError(f"the text is longer than {MAX_TEXT} characters")
        return value

    @field_validator("start_date", "end_date")
    @classmethod
    def _date(cls, value: str, info: Any) -> str:
        value = value.strip()
        if value:
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"{info.field_name} {value!r} is not a date like 2026-12-24"
                ) from None
        return value

    @model_validator(mode="after")
    def _dates_in_order(self) -> Settings:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self

    def answers_on(self, day: datetime.date) -> bool:
        """True when the responder is on and ``day`` is within its dates."""
        if not self.active or not (self.text or self.subject):
            return False
        if self.start_date and day < datetime.date.fromisoformat(self.start_date):
            return False
        return not (self.end_date and day > datetime.date.fromisoformat(self.end_date))

    def reply(self) -> AutoReply:
        """The reply these settings describe."""
        return AutoReply(
            subject=self.subject,
            text=self.text,
            from_address=self.from_address,
            real_name=self.real_name,
            days=self.days,
        )


def today(host: PluginHost) -> datetime.date:
    """The server's (local time) date on the host's clock."""
    return datetime.datetime.fromtimestamp(host.clock.seconds()).date()


async def _respond(
    host: PluginHost, mailbox: str, envelope: Envelope, message_path: str, config: Settings
) -> None:
    addresses = [r.address for r in envelope.recipients if r.mailbox.lower() == mailbox.lower()]
    log = host.for_plugin("autoreply").log
    try:
        outcome = await send_auto_reply(
            host,
            message=message_path,
            sender=envelope.sender,
            recipient=mailbox,
            addresses=addresses,
            reply=config.reply(),
        )
    except Exception:
        log.failure("auto-reply for {mailbox} failed", mailbox=mailbox)
        return None
    if outcome.sent:
        log.info(
            "auto-reply {queue_id} from {mailbox} to <{sender}>",
            queue_id=outcome.queue_id,
            mailbox=mailbox,
            sender=envelope.sender,
        )
    else:
        log.info(
            "no auto-reply from {mailbox} to <{sender}>: {reason}",
            mailbox=mailbox,
            sender=envelope.sender,
            reason=outcome.reason,
        )
    return None


@hookimpl
def mailmax_deliver(mailbox: str, envelope: Envelope, message_path: str, config: Settings) -> Any:
    """Answer the message when the user's responder is on; the copy is stored as usual."""
    host = current_host()
    if not config.answers_on(today(host)):
        return None
    return defer.ensureDeferred(_respond(host, mailbox, envelope, message_path, config))
