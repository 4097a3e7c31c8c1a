"""senderguard: refuse mail from chosen sender domains, per system, domain or user.

An example of a third-party MailMax plugin, installed as a package that registers itself in
the ``mailmax.plugins`` entry-point group (see ``pyproject.toml``)::

    pip install ./examples/mailmax-example-plugin
    mailmax plugin enable senderguard --domain example.com
    mailmax plugin set senderguard blocked=spam.example,junk.example --domain example.com
"""

from __future__ import annotations

from mailmax.plugin import Field, PluginSettings, Recipient, Verdict, hookimpl, reject

#: Where an admin may switch and configure the plugin.
SCOPES = ("system", "domain", "user")


class Settings(PluginSettings):
    """What senderguard refuses."""

    blocked: list[str] = Field(
        default_factory=list, description="Sender domains refused (exact, lower case)."
    )
    message: str = Field("Sender domain refused", description="The reply text.")


@hookimpl
def mailmax_rcpt_to(recipient: Recipient, envelope, config: Settings) -> Verdict | None:
    """Refuse this recipient when the sender's domain is blocked in the recipient's scope."""
    domain = envelope.sender.rpartition("@")[2].lower()
    if domain and domain in config.blocked:
        return reject(f"{config.message} for <{recipient.address}>", 550, "5.7.1")
    return None


@hookimpl
def mailmax_configure(config: Settings) -> None:
    """Refuse a system configuration that blocks everything."""
    if "*" in config.blocked:
        raise ValueError("blocked: '*' would refuse all mail; list domains instead")
