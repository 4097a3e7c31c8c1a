"""What a reload changes: the keys a running server applies now, and those that need a restart.

:func:`compare` sets the configuration the server runs with against the file just read. A key
marked as needing a restart (see :func:`mailmax.core.config.needs_restart`) keeps its running
value, so the configuration a reload applies (:attr:`Difference.effective`) changes only what
can change live; the listeners are matched by service, address and port, and a listener added,
removed or moved needs a restart, while the other keys of a listener that stays apply live.
:class:`ReloadReport` is what a reload answers (``mailmax reload``, the log for SIGHUP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mailmax.core.config import ListenerSettings, Settings, needs_restart

#: Keys of :class:`Settings` that are not sections of plain keys.
_NOT_SECTIONS = frozenset({"listeners", "source", "ldap"})


@dataclass(frozen=True)
class Difference:
    """The outcome of :func:`compare`."""

    #: The new configuration, with every restart-only key at its running value.
    effective: Settings
    #: Dotted keys applied by the reload (``smtp.max_message_size``).
    applied: list[str] = field(default_factory=list)
    #: What changed in the file but waits for a restart, each with its old and new value.
    restart: list[str] = field(default_factory=list)


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, BaseModel) else repr(value)


def _listener_name(listener: ListenerSettings) -> str:
    return f"{listener.service} on {listener.address}:{listener.port}"


def _identity(listener: ListenerSettings) -> tuple[str, str, int]:
    return (listener.service, listener.address, listener.port)


def _section(
    name: str, old: BaseModel, new: BaseModel, applied: list[str], restart: list[str]
) -> BaseModel:
    """``new`` with its restart-only keys at their values in ``old``."""
    keep: dict[str, Any] = {}
    for key in type(new).model_fields:
        before, after = getattr(old, key), getattr(new, key)
        if before == after:
            continue
        if needs_restart(type(new), key):
            restart.append(f"{name}.{key} ({_show(before)} -> {_show(after)})")
            keep[key] = before
        else:
            applied.append(f"{name}.{key}")
    return new.model_copy(update=keep) if keep else new


def _listeners(
    running: list[ListenerSettings],
    new: list[ListenerSettings],
    applied: list[str],
    restart: list[str],
) -> list[ListenerSettings]:
    """The running listeners, each with the live keys of its match in ``new``."""
    wanted = {_identity(item): item for item in new}
    kept = {_identity(item) for item in running}
    out = []
    for listener in running:
        match = wanted.get(_identity(listener))
        if match is None:
            restart.append(f"listeners: {_listener_name(listener)} is no longer configured")
            out.append(listener)
            continue
        name = f"listeners[{_listener_name(listener)}]"
        out.append(_section(name, listener, match, applied, restart))
    for listener in new:
        if _identity(listener) not in kept:
            restart.append(f"listeners: {_listener_name(listener)} is new")
    return out


def compare(running: Settings, new: Settings) -> Difference:
    """What applying ``new`` to a server running with ``running`` changes (see the module)."""
    applied: list[str] = []
    restart: list[str] = []
    update: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name in _NOT_SECTIONS:
            continue
        update[name] = _section(name, getattr(running, name), getattr(new, name), applied, restart)
    update["listeners"] = _listeners(running.listeners, new.listeners, applied, restart)
    if running.ldap != new.ldap:
        restart.append("ldap: the LDAP sources changed")
        update["ldap"] = running.ldap
    return Difference(new.model_copy(update=update), applied, restart)


@dataclass(frozen=True)
class ReloadReport:
    """What a reload did: the plugin set now running, the keys applied, those that wait for a
    restart (each with its old and new value)."""

    plugins: list[str]
    applied: list[str]
    restart: list[str]

    def lines(self) -> list[str]:
        """The report as sentences (what ``mailmax reload`` prints)."""
        out = ["reloaded: plugins " + (", ".join(self.plugins) or "(none)")]
        if self.applied:
            out.append("applied: " + ", ".join(self.applied))
        if self.restart:
            out.append("not applied, needs a restart (running with the old value):")
            out += [f"  {item}" for item in self.restart]
        return out
