"""rules: what happens to each incoming message, per recipient, by the lists admins and users keep.

Rule lists live in the directory (the table ``rules_entries``) at three levels: the system's,
each domain's and each user's. Every local delivery runs the system list, then the recipient's
domain list, then the user's own list; a rule whose conditions all hold has all its actions
done, and ``terminate`` stops the lists after that rule. Rules are managed with ``mailmax
rule``; a running server sees a change within ``refresh_seconds``, without a reload.

Programs (test conditions and actions) run only when the system administrator put them on
``allowed_programs``; they run without a shell, with a time limit, in a temporary folder that is
always removed; their output is logged. Dates and times are read on the server's clock in
``time_zone``.
"""

from __future__ import annotations

import datetime
import os
import weakref
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import field_validator
from twisted.internet import defer, threads

from mailmax.plugin import (
    SYSTEM_ONLY,
    Envelope,
    Field,
    PluginSettings,
    PluginTables,
    current_host,
    every,
    hookimpl,
)
from mailmax.plugins.rules import actions, changes, store
from mailmax.plugins.rules.engine import Plan, ProgramTest, RuleList, evaluate, evaluate_now
from mailmax.plugins.rules.live import live_rules
from mailmax.plugins.rules.message import MessageView, RecentMessages
from mailmax.plugins.rules.model import DOMAIN, SYSTEM, USER, program_allowed
from mailmax.plugins.rules.programs import run_in_server

NAME = "rules"
#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "domain", "user")
#: The plugin's own table, with its migrations.
TABLES = PluginTables(store.metadata, "migrations")
#: Copies up to this size are read on the reactor thread (a thread hop costs more than
#: reading a few pages that are still in the page cache); larger ones in a worker thread.
INLINE_READ_BYTES = 64 * 1024
#: Where programs get their temporary folders, inside the data directory.
PROGRAM_FOLDER = Path("rules") / "run"


class Settings(PluginSettings):
    """Programs rules may run, the time zone of dates and times, how fresh the rules are."""

    allowed_programs: list[str] = Field(
        default_factory=list,
        description="Programs (absolute paths) that rules at any level may run; none by default.",
        json_schema_extra=SYSTEM_ONLY,
    )
    program_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds a rule's program may run before it is stopped.",
        json_schema_extra=SYSTEM_ONLY,
    )
    time_zone: str = Field(
        "",
        description="Time zone of the date, weekday and time conditions (e.g. Europe/Paris);"
        " empty: the server's.",
        json_schema_extra=SYSTEM_ONLY,
    )
    reply_folder: str = Field(
        "",
        description="Folder (absolute path) of the reply texts 'respond-file' may name; empty:"
        " replies from files are off.",
        json_schema_extra=SYSTEM_ONLY,
    )
    reply_days: int = Field(
        7,
        ge=1,
        le=365,
        description="A rule's automatic reply answers each sender at most once in this many days.",
        json_schema_extra=SYSTEM_ONLY,
    )
    refresh_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How old the server's copy of the rules may get before it reads them"
        " again (0: at every delivery).",
    )

    @field_validator("allowed_programs")
    @classmethod
    def _absolute(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith("/"):
                raise ValueError(f"{value!r} is not an absolute path to a program")
        return values

    @field_validator("reply_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path to a folder")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"{value!r} is not a time zone name (e.g. UTC or Europe/Paris)"
                ) from None
        return value


def local_time(seconds: float, zone: str) -> datetime.datetime:
    """The moment ``seconds`` (clock seconds) in the time zone ``zone`` (empty: the server's)."""
    if zone:
        return datetime.datetime.fromtimestamp(seconds, zoneinfo.ZoneInfo(zone))
    return datetime.datetime.fromtimestamp(seconds).astimezone()


def list_keys(mailbox: str) -> list[tuple[str, str]]:
    """The lists that apply to ``mailbox``, in the order they run."""
    mailbox = mailbox.lower()
    return [(SYSTEM, ""), (DOMAIN, mailbox.rpartition("@")[2]), (USER, mailbox)]


def _in_thread(host: Any) -> Any:
    reactor = host.reactor
    if reactor is None:
        return lambda function, *args: defer.maybeDeferred(function, *args)
    return lambda function, *args: threads.deferToThreadPool(
        reactor, reactor.getThreadPool(), function, *args
    )


@dataclass
class _HostState:
    """What the plugin keeps per running server between deliveries."""

    context: Any
    messages: RecentMessages = field(default_factory=RecentMessages)


_STATE: weakref.WeakKeyDictionary[Any, _HostState] = weakref.WeakKeyDictionary()


def _state(host: Any) -> _HostState:
    found = _STATE.get(host)
    if found is None:
        found = _STATE[host] = _HostState(host.for_plugin(NAME))
    return found


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _view_now(messages: RecentMessages, message_path: str) -> tuple[Any, MessageView | None]:
    """The message at ``message_path`` as rules see it, when it is kept or small enough to
    read here: ``(key, view)``; ``(key, None)`` when it is to be read in a thread."""
    info = os.stat(message_path)
    key = (message_path, info.st_size, info.st_mtime_ns)
    view = messages.get(key)
    if view is None and info.st_size <= INLINE_READ_BYTES:
        data = _read(message_path)  # just written by the queue: in the page cache, cheaper here
        view = MessageView(changes.without_trace(data))
        messages.keep(key, view)
    return key, view


async def _view(messages: RecentMessages, in_thread: Any, message_path: str) -> MessageView:
    """The message at ``message_path`` as rules see it; read and parsed once for all its
    recipients."""
    key, view = _view_now(messages, message_path)
    if view is None:
        data = await in_thread(_read, message_path)
        view = MessageView(changes.without_trace(data))
        messages.keep(key, view)
    return view


def _is_note(host: Any, view: MessageView) -> bool:
    """Whether the message is a note the rules sent (never run the rules on it); the header
    is parsed for this only when it may hold the note's field."""
    return view.may_have_field(changes.NOTE_HEADER) and changes.is_our_note(
        view.header, host.secret("rules-note")
    )


def _local_now(rules: RuleList, context: Any, config: Settings) -> datetime.datetime | None:
    """The local time, looked up only for lists that test it."""
    if not rules.needs_clock:
        return None
    return local_time(actions.now_seconds(context), config.time_zone)


def _counted(context: Any, view: MessageView, plan: Plan) -> None:
    if view.body_read:
        context.metrics.increment("bodies_read")
    if plan.matched:
        context.metrics.increment("matched", len(plan.matched))


def _program_test(host: Any, config: Settings) -> ProgramTest:
    """How program conditions and actions run in the server (on the allow-list only)."""
    context = _state(host).context
    in_thread = _in_thread(host)

    async def program_test(argv: tuple[str, ...], message: MessageView) -> bool:
        if not program_allowed(argv, config.allowed_programs):
            context.log.error("rule program {p} is not on allowed_programs: skipped", p=argv[0])
            return False
        root = host.data_dir / PROGRAM_FOLDER
        return await run_in_server(
            host.reactor, in_thread, root, argv, message, config.program_timeout, context.log
        )

    return program_test


async def _deliver(
    host: Any,
    mailbox: str,
    envelope: Envelope,
    message_path: str,
    config: Settings,
    rules: RuleList | None,
    view: MessageView | None,
) -> Any:
    """The rules over this copy, waiting for what :func:`mailmax_deliver` could not have at
    once (the lists read again, a large message read in a thread, programs)."""
    context = _state(host).context
    if rules is None:
        rules = await live_rules(host).rules_for(
            context, list_keys(mailbox), config.refresh_seconds
        )
    if not rules.rules:
        return None
    if view is None:
        view = await _view(_state(host).messages, _in_thread(host), message_path)
    if _is_note(host, view):
        return None
    now = _local_now(rules, context, config)
    plan = await evaluate(rules, view, now, _program_test(host, config))
    _counted(context, view, plan)
    if not plan.matched:
        return None
    return await _carry_out(host, mailbox, envelope, message_path, config, view, plan)


def _needs_waiting(plan: Plan) -> bool:
    """Whether doing ``plan`` takes more than choosing a folder (or discarding)."""
    return bool(
        plan.forwards or plan.notes or plan.programs or plan.replies or plan.strip_attachments
    )


async def _carry_out(
    host: Any,
    mailbox: str,
    envelope: Envelope,
    message_path: str,
    config: Settings,
    view: MessageView,
    plan: Plan,
) -> Any:
    """Do what the matched rules ask for this copy; where it goes."""
    context = _state(host).context
    if _needs_waiting(plan):
        # (the delivery's own log line names the matched rules and the folder or discard)
        context.log.info(
            "{queue_id} for {mailbox}: {what}",
            queue_id=Path(message_path).name,
            mailbox=mailbox,
            what="; ".join(plan.lines()),
        )
    program_test = _program_test(host, config)
    for _, argv in plan.programs:
        await program_test(argv, view)
    if plan.forwards:
        await actions.forward(context, mailbox, envelope, message_path, plan.forwards)
    for label, kind, value in plan.replies:
        await actions.respond(context, mailbox, envelope, view, label, kind, value, config)
    if plan.notes:
        message = changes.note(
            mailbox,
            host.hostname,
            host.secret("rules-note"),
            view.header,
            plan.notes,
            actions.outcome_text(plan),
        )
        note_id = actions.copy_id(message_path, mailbox, "n")
        await host.send("", [mailbox], message, queue_id=note_id)
    return await actions.decide(context, _in_thread(host), mailbox, message_path, view, plan)


@hookimpl
def mailmax_deliver(mailbox: str, envelope: Envelope, message_path: str, config: Any) -> Any:
    """Run the system's, the domain's and the user's rules over this copy and do what they say."""
    host = current_host()
    state = _state(host)
    now_seconds = host.clock.seconds()
    rules = live_rules(host).fresh(list_keys(mailbox), config.refresh_seconds, now_seconds)
    if rules is not None and not rules.rules:
        return None
    view = None
    if rules is not None:
        _, view = _view_now(state.messages, message_path)
    if rules is None or view is None or rules.runs_programs:
        return defer.ensureDeferred(
            _deliver(host, mailbox, envelope, message_path, config, rules, view)
        )
    # Most deliveries: fresh lists, a small message, no programs: decided here, without waiting.
    if _is_note(host, view):
        return None
    plan = evaluate_now(rules, view, _local_now(rules, state.context, config))
    _counted(state.context, view, plan)
    if not plan.matched:
        return None
    if _needs_waiting(plan):
        return defer.ensureDeferred(
            _carry_out(host, mailbox, envelope, message_path, config, view, plan)
        )
    return actions.decision(plan)


@every(3600)
def purge(context: Any) -> Any:
    """Remove copies without attachments that no delivery used for a day."""
    host = context.host
    return _in_thread(host)(actions.purge_changed, host.data_dir, actions.now_seconds(context))
