"""Banned clients and senders, kept in the directory for the bans plugin (the CLI and the API).

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed. Client bans (IP addresses, networks) are system-wide or per listening
address; sender bans (addresses, domains, wildcards) may also be per domain. A domain
administrator manages the sender bans of their domains only.
"""

from __future__ import annotations

import datetime
import re
import time
from functools import partial
from typing import Any

from mailmax.core.directory.errors import DirectoryError, FieldError, NotFound
from mailmax.core.services.actor import audit
from mailmax.core.services.plugintables import PluginTableAdmin

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BanRefused(DirectoryError):
    """A ban request cannot be done as asked; nothing was changed."""


def parse_expiry(text: str, now: float) -> float:
    """Clock seconds of an expiry given as a duration (``90s``, ``30m``, ``12h``, ``7d``,
    ``2w``) or a date and time (``2027-01-31``, ``2027-01-31T18:00``, UTC unless it says)."""
    value = text.strip().lower()
    match = _DURATION.match(value)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds <= 0:
            raise FieldError("expires", f"{{field}} {text!r}: a ban must last longer than that")
        return now + seconds
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise FieldError(
            "expires",
            f"{{field}} {text!r} is neither a duration (90s, 30m, 12h, 7d, 2w) nor a date "
            "and time (2027-01-31 or 2027-01-31T18:00, UTC unless it names a zone)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    when = moment.timestamp()
    if when <= now:
        raise FieldError("expires", f"{{field}} {text!r} is in the past; nothing was changed")
    return when


def moment(seconds: float | None) -> str | None:
    """A Unix time as ``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ban_record(ban: Any) -> dict[str, Any]:
    """A ban as the CLI and the API show it."""
    where = "system" if ban.scope == "system" else f"{ban.scope} {ban.scope_value}"
    return {
        "id": ban.id,
        "pattern": ban.pattern,
        "kind": "client" if ban.kind == "ip" else "sender",
        "scope": ban.scope,
        "scope_value": ban.scope_value,
        "where": where,
        "cause": ban.cause,
        "reason": ban.reason,
        "added": ban.added,
        "added_at": moment(ban.added),
        "expires": ban.expires,
        "expires_at": moment(ban.expires),
    }


#: The plugin whose blocks of clients ``ban list`` shows and ``ban delete`` lifts with the bans.
TARPIT = "tarpit"
#: Key prefix of a client's block in the tarpit's key-value store.
TARPIT_BLOCK = "block:"


def tarpit_record(block: dict[str, Any]) -> dict[str, Any]:
    """A tarpit block as the CLI and the API show a ban."""
    return {
        "id": None,
        "pattern": block["ip"],
        "kind": "client",
        "scope": "system",
        "scope_value": "",
        "where": "system",
        "cause": block.get("cause", TARPIT),
        "reason": block.get("reason", ""),
        "added": block.get("since"),
        "added_at": moment(block.get("since")),
        "expires": block.get("until"),
        "expires_at": moment(block.get("until")),
    }


class BanAdmin(PluginTableAdmin):
    """Bans for ``actor`` on the system of ``settings`` and ``directory``."""

    MODULE = "mailmax.plugins.bans"

    def classify(self, pattern: str) -> tuple[str, str]:
        """``(kind, normalized pattern)``; BanRefused saying why a pattern is not one."""
        from mailmax.plugins.bans.patterns import classify

        try:
            return classify(pattern)
        except ValueError as exc:
            raise BanRefused(str(exc)) from None

    def scope(self, domain: str | None, listener: str | None, kind: str) -> tuple[str, str]:
        """The scope of a ban; a domain administrator has only their domains."""
        from mailmax.plugins.bans import store
        from mailmax.plugins.bans.patterns import CLIENT

        if domain and listener:
            raise BanRefused("give --domain or --listener, not both")
        if domain:
            if kind == CLIENT:
                raise BanRefused(
                    "a client IP or network is banned system-wide or per --listener; "
                    "--domain takes sender addresses and domains"
                )
            from mailmax.core.services.domains import get_domain

            return store.DOMAIN, get_domain(self.directory, self.actor, domain).name.lower()
        self.actor.require_system("bans system-wide or per listener")
        if listener:
            return store.LISTENER, self._listener(listener)
        return store.SYSTEM, ""

    def _listener(self, text: str) -> str:
        return self.listening_address(text, BanRefused, "a ban per listener would never hold")

    def add(
        self,
        pattern: str,
        *,
        domain: str | None = None,
        listener: str | None = None,
        expires: float | None = None,
        reason: str = "",
        now: float | None = None,
    ) -> dict[str, Any]:
        """Ban ``pattern`` (replacing the expiry and reason of the same ban)."""
        from mailmax.plugins.bans import store

        kind, normalized = self.classify(pattern)
        scope, scope_value = self.scope(domain, listener, kind)
        add = partial(store.add, kind=kind, pattern=normalized, scope=scope,
                      scope_value=scope_value, reason=reason, now=now or time.time(),
                      expires=expires)  # fmt: skip
        ban, _ = self._run(add, write=True)
        record = ban_record(ban)
        audit(self.directory, self.actor, "ban.add", normalized, where=record["where"],
              expires=expires, reason=reason)  # fmt: skip
        return record

    def listing(
        self,
        *,
        domain: str | None = None,
        listener: str | None = None,
        system_only: bool = False,
        expired: bool = False,
    ) -> list[dict[str, Any]]:
        """The bans (of one scope), those a domain administrator may see."""
        from mailmax.plugins.bans import store

        scope: str | None = None
        value: str | None = None
        if system_only:
            if domain or listener:
                raise BanRefused("give one of --system, --domain and --listener")
            self.actor.require_system("system-wide bans")
            scope, value = store.SYSTEM, ""
        elif domain or listener:
            scope, value = self.scope(domain, listener, "sender")
        query = partial(store.listing, now=time.time(), scope=scope, scope_value=value,
                        include_expired=expired)  # fmt: skip
        rows = [ban_record(ban) for ban in self._run(query)]
        if self.actor.system and scope in (None, store.SYSTEM):
            rows.extend(self.tarpit_blocks())
        if not self.actor.system:
            rows = [r for r in rows if r["scope"] == store.DOMAIN
                    and self.actor.may_manage(r["scope_value"])]  # fmt: skip
        return rows

    def delete(
        self, pattern: str, *, domain: str | None = None, listener: str | None = None
    ) -> dict[str, Any]:
        """Lift the ban on ``pattern`` of a scope."""
        from mailmax.plugins.bans import store

        kind, normalized = self.classify(pattern)
        scope, scope_value = self.scope(domain, listener, kind)
        deleted = self._run(
            lambda connection: store.delete(connection, kind, normalized, scope, scope_value),
            write=True,
        )
        blocked = None
        if kind == "ip" and scope == store.SYSTEM:
            blocked = self.lift_tarpit_block(normalized)
        if deleted is None and blocked is None:
            where = "system-wide" if scope == store.SYSTEM else f"for {scope} {scope_value}"
            raise NotFound(f"no ban on {normalized} {where}")
        record = ban_record(deleted) if deleted is not None else blocked
        assert record is not None
        audit(self.directory, self.actor, "ban.delete", normalized, where=record["where"])
        return record

    def tarpit_blocks(self) -> list[dict[str, Any]]:
        """The clients the tarpit has blocked now, as ban records (cause ``tarpit``)."""
        from mailmax.core.pluginhost.storage import kv_items

        found = kv_items(self.directory.engine, TARPIT, TARPIT_BLOCK, time.time(), 10_000)
        return [tarpit_record(block) for block in found.values() if isinstance(block, dict)]

    def lift_tarpit_block(self, ip: str) -> dict[str, Any] | None:
        """Lift the tarpit's block of ``ip``; its record, or None when it was not blocked.

        A running server keeps answering from its short-lived cache of blocks for up to two
        seconds."""
        from mailmax.core.pluginhost.storage import kv_delete, kv_get

        now = time.time()
        live, block = kv_get(self.directory.engine, TARPIT, TARPIT_BLOCK + ip, now)
        if not live or not kv_delete(self.directory.engine, TARPIT, TARPIT_BLOCK + ip, now):
            return None
        return tarpit_record(block if isinstance(block, dict) else {"ip": ip})
