"""A test plugin that uses the plugin API's data, schedules and services.

- ``mailmax_data`` counts messages in its key-value store and in a counter metric;
- ``mailmax_mail_from`` refuses a sender whose domain has the TXT record ``deny`` or the
  address 127.0.0.2 under ``policy_zone`` (the host's DNS resolver);
- ``mailmax_connect`` refuses a client whose address has no PTR record ending in
  ``ptr_suffix`` (when set);
- the task ``report`` (every ``report_seconds``) writes each new count to its table
  ``tally_reports``, sets the gauge ``reported`` and sends a notice to ``notify``;
- the task ``broken`` raises while ``fail_task`` is on;
- the task ``nightly`` (daily at 03:00 UTC) records when it ran.
"""

from __future__ import annotations

from email.message import EmailMessage

import sqlalchemy as sa

from mailmax.plugin import (
    Field,
    PluginSettings,
    PluginTables,
    current_host,
    daily,
    every,
    hookimpl,
    reject,
)

NAME = "tally"

metadata = sa.MetaData()
reports = sa.Table(
    "tally_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
)
TABLES = PluginTables(metadata, "migrations")


class Settings(PluginSettings):
    """The test plugin's settings."""

    report_seconds: float = Field(60.0, description="Seconds between two reports.")
    notify: str = Field("", description="Who gets a notice with each new count.")
    label: str = Field("tally", description="The word notices and reports start with.")
    policy_zone: str = Field("", description="Zone of the TXT records that refuse senders.")
    ptr_suffix: str = Field("", description="Clients need a PTR name ending in this.")
    fail_task: bool = Field(False, description="Make the task broken raise.")


@hookimpl
async def mailmax_connect(session, config):
    if not config.ptr_suffix:
        return None
    names = await current_host().dns.ptr(session.peer_ip)
    if not any(name.endswith(config.ptr_suffix) for name in names):
        return reject(f"No PTR name under {config.ptr_suffix} for {session.peer_ip}", 554, "5.7.1")
    return None


@hookimpl
async def mailmax_mail_from(sender, config):
    if not config.policy_zone or "@" not in sender:
        return None
    domain = sender.rpartition("@")[2]
    dns = current_host().dns
    texts = await dns.txt(f"{domain}.{config.policy_zone}")
    if "deny" in texts:
        return reject(f"Sender domain {domain} is refused by policy", 550, "5.7.1")
    if "127.0.0.2" in await dns.a(f"{domain}.{config.policy_zone}"):
        return reject(f"Sender domain {domain} is listed", 550, "5.7.1")
    return None


@hookimpl
def mailmax_data(envelope):
    context = current_host().for_plugin(NAME)
    context.metrics.increment("messages")
    return context.kv.increment("messages").addCallback(lambda _: None)


def _insert(connection, messages, label):
    connection.execute(sa.insert(reports).values(messages=messages, label=label))


@every("report_seconds")
async def report(context, config):
    count = await context.kv.get("messages", 0)
    if count == await context.kv.get("reported", 0):
        return
    await context.transaction(_insert, count, config.label, write=True)
    await context.kv.set("reported", count)
    context.metrics.set_gauge("reported", count)
    context.log.info("reported {count} messages", count=count)
    if config.notify:
        notice = EmailMessage()
        notice["From"] = f"tally@{context.host.hostname}"
        notice["To"] = config.notify
        notice["Subject"] = f"{config.label}: {count} messages"
        notice.set_content(f"{count} messages so far.\n")
        await context.host.send("", [config.notify], notice)


@every("report_seconds")
def broken(config):
    if config.fail_task:
        raise RuntimeError("broken on purpose")


@daily("03:00")
def nightly(context):
    return context.kv.set("nightly", context.host.clock.seconds())
