"""antivirus: scan mail with clamd or an external command, and act on what is found.

Each message is scanned once at the end of DATA (every recipient group shares the result) and
the result travels with it in the spool, so delivery and transit do not scan it again. See the
README for the settings and actions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from mailmax.plugin import (
    ChangeError,
    Envelope,
    MessageChanges,
    PluginContext,
    PluginHost,
    Session,
    accept,
    current_host,
    every,
    hookimpl,
    quarantine,
    reject,
    tempfail,
)
from mailmax.plugins.antivirus import actions, updating
from mailmax.plugins.antivirus.clamdclient import endpoint_for
from mailmax.plugins.antivirus.command import split_command
from mailmax.plugins.antivirus.scanning import NOTE, ScanResult, scan_bytes, scan_once
from mailmax.plugins.antivirus.settings import Settings

__all__ = ["SCOPES", "Settings"]

#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain", "user")
NAME = "antivirus"


def _direction(session: Session) -> str:
    return "outbound" if session.auth_user is not None or session.trusted else "inbound"


def _note(result: ScanResult, direction: str) -> str:
    if result.status == "infected":
        return f"infected {direction} {result.virus}"
    return result.status


def _infected_note(envelope: Envelope) -> tuple[str, str] | None:
    """``(direction, virus)`` when the message's note says it is infected."""
    status, _, rest = envelope.notes.get(NOTE, "").partition(" ")
    if status != "infected":
        return None
    direction, _, virus = rest.partition(" ")
    return direction, virus


class _Told:
    """Whether this transaction's virus was already logged and announced (once per message)."""

    done = False


async def _announce(
    host: PluginHost,
    session: Session,
    envelope: Envelope,
    result: ScanResult,
    action: str,
    config: Any,
) -> None:
    told = envelope.stash.get(_Told)
    if told.done:
        return
    told.done = True
    context = host.for_plugin(NAME)
    context.metrics.increment("infected")
    context.log.warn(
        "virus {virus} in the message of session {session} from <{sender}>: {action}",
        virus=result.virus,
        session=session.session_id,
        sender=envelope.sender,
        action=action,
    )
    sender = f"postmaster@{host.hostname}"
    lines = actions.describe(envelope, result, action)
    subject = f"Virus found: {result.virus}"
    to = []
    if config.alert:
        to.append(config.alert)
    if config.notify_recipient:
        to += [r.mailbox or r.address for r in envelope.recipients if r.kind == "local"]
    if config.notify_sender and session.auth_user is not None and host.is_local(envelope.sender):
        to.append(envelope.sender)
    for address in dict.fromkeys(to):
        try:
            await host.send("", [address], actions.notice(sender, address, subject, lines))
        except (ValueError, RuntimeError, OSError) as exc:
            context.log.error("virus notice to {to} not queued: {e}", to=address, e=exc)


def _disinfect(changes: MessageChanges, result: ScanResult) -> bool:
    """Replace each infected part; False when one cannot be replaced (then refuse)."""
    try:
        for section, virus in result.parts:
            changes.replace_part(section, actions.removed_part(virus))
    except ChangeError:
        return False
    return True


async def _data(
    host: PluginHost,
    session: Session,
    envelope: Envelope,
    message: bytes,
    changes: MessageChanges,
    config: Any,
) -> Any:
    result = await scan_once(host.reactor, envelope, config, message)
    context = host.for_plugin(NAME)
    direction = _direction(session)
    action = getattr(config, f"{direction}_action")
    if result.status == "unscanned":
        context.metrics.increment("failures")
        context.log.warn("message not scanned: {detail}", detail=result.detail)
        if config.on_failure == "tempfail":
            return tempfail("Virus scanner not available, try again later", 451, "4.3.0")
    elif result.status == "oversize" and config.oversize == "tempfail":
        return tempfail("Message too large to scan for viruses", 451, "4.3.0")
    elif result.status == "infected":
        if action == "disinfect" and not result.parts:
            action = "refuse"  # nothing to cut out: the virus is in the message itself
        await _announce(host, session, envelope, result, action, config)
        if action == "refuse":
            return reject(f"Virus found: {result.virus}", 554, "5.7.1")
        if action == "disinfect" and not _disinfect(changes, result):
            return reject(f"Virus found: {result.virus}", 554, "5.7.1")
    envelope.notes[NOTE] = _note(result, direction)
    if config.header:
        value = actions.header_value(result, host.hostname, action)
        changes.add_header(config.header, value)
    return None


@hookimpl
def mailmax_data(
    session: Session, envelope: Envelope, message: bytes, changes: MessageChanges, config: Any
) -> Any:
    """Scan the message (once for all groups) and refuse, mark, disinfect or let it pass."""
    return defer.ensureDeferred(_data(current_host(), session, envelope, message, changes, config))


@hookimpl
def mailmax_deliver(mailbox: str, envelope: Envelope, message_path: str, config: Any) -> Any:
    """Quarantine the copy of an infected message when that is the mailbox's action."""
    found = _infected_note(envelope)
    if found is None:
        return None
    direction, virus = found
    if getattr(config, f"{direction}_action", "") != "quarantine":
        return None
    current_host().for_plugin(NAME).log.warn(
        "{queue_id}: virus {virus} for {mailbox} quarantined",
        queue_id=Path(message_path).name,
        virus=virus,
        mailbox=mailbox,
    )
    return quarantine(
        f"virus {virus}", mailbox=config.quarantine_mailbox or None, folder=config.quarantine_folder
    )


async def _transit(
    host: PluginHost, envelope: Envelope, domain: str, message_path: str, config: Any
) -> Any:
    context = host.for_plugin(NAME)
    queue_id = Path(message_path).name
    found = _infected_note(envelope)
    if found is None and envelope.notes.get(NOTE) in ("clean", "oversize"):
        return None  # scanned when it arrived (an unscanned message is tried again)
    if found is None:
        data = await threads.deferToThreadPool(
            host.reactor, host.reactor.getThreadPool(), Path(message_path).read_bytes
        )
        result = await scan_bytes(host.reactor, config, data)
        if result.status == "unscanned":
            context.metrics.increment("failures")
            context.log.warn(
                "{queue_id} for {domain} not scanned: {d}",
                queue_id=queue_id,
                domain=domain,
                d=result.detail,
            )
            if config.on_failure == "tempfail":
                return tempfail("Virus scanner not available, try again later", 451, "4.3.0")
            return None
        if result.status != "infected":
            return None
        context.metrics.increment("infected")
        virus = result.virus
    else:
        virus = found[1]
    if config.inbound_action == "quarantine" and config.quarantine_mailbox:
        await host.submit("", [config.quarantine_mailbox], message_path, queue_id=None)
        context.log.warn(
            "{queue_id}: virus {virus} for {domain} sent to quarantine {mailbox}",
            queue_id=queue_id,
            virus=virus,
            domain=domain,
            mailbox=config.quarantine_mailbox,
        )
        return accept(f"Virus {virus} quarantined")
    context.log.warn(
        "{queue_id}: virus {virus} for {domain} refused",
        queue_id=queue_id,
        virus=virus,
        domain=domain,
    )
    return reject(f"Virus found: {virus}", 554, "5.7.1")


@hookimpl
def mailmax_transit(envelope: Envelope, domain: str, message_path: str, config: Any) -> Any:
    """Scan mail that passes through (unless it was scanned when it arrived)."""
    if not config.transit:
        return None
    return defer.ensureDeferred(_transit(current_host(), envelope, domain, message_path, config))


@hookimpl
def mailmax_configure(config: Any) -> None:
    """Check what the types cannot: the socket address and the commands."""
    if config.scanner == "clamd":
        endpoint_for(None, config.clamd_socket, 1)
    elif not config.command:
        raise ValueError("scanner = 'command' needs a command")
    else:
        split_command(config.command)
    updating.configure(config)


@every(60, name="definition-updates")
def definition_updates(host: PluginHost, config: Any) -> Any:
    """Run the update command when it is due (daily at a time, or every N hours)."""
    return updating.when_due(host, config)


def _status(context: PluginContext, config: Any) -> Any:
    return defer.ensureDeferred(updating.status(context, config)).addCallback(json.dumps)


def _update(context: PluginContext, config: Any) -> Any:
    return defer.ensureDeferred(updating.update_now(context, config)).addCallback(json.dumps)


#: Commands of the running server's admin channel (``mailmax antivirus status|update``).
ADMIN_COMMANDS = {"status": _status, "update": _update}
