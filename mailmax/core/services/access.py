"""Connection control rules, kept in the directory for the access plugin (the CLI and the API).

A running server sees a change within the plugin's ``refresh_seconds`` (2 s by default); no
reload is needed. The listing also shows the rules the configuration implies (``[smtp]
trusted_networks``, ``[connections] exempt_networks``), tried after the stored ones. Only
system administrators manage these rules.
"""

from __future__ import annotations

from typing import Any

from mailmax.core.directory.errors import DirectoryError, FieldError, NotFound
from mailmax.core.services.actor import audit
from mailmax.core.services.plugintables import PluginTableAdmin

WHAT = "connection control rules"


class AccessRefused(DirectoryError):
    """An access rule request cannot be done as asked; nothing was changed."""


def rule_record(rule: Any) -> dict[str, Any]:
    """A stored rule as the CLI and the API show it."""
    return {
        "id": rule.id,
        "where": rule.where,
        "listener": rule.listener,
        "position": rule.position,
        "pattern": rule.pattern,
        "kind": rule.kind,
        "flags": list(rule.flags),
        "source": "directory",
        "comment": rule.comment,
    }


class AccessAdmin(PluginTableAdmin):
    """Access rules for ``actor`` on the system of ``settings`` and ``directory``."""

    MODULE = "mailmax.plugins.access"

    def _run(self, function: Any, *args: Any, write: bool = False) -> Any:
        self.actor.require_system(WHAT)
        return super()._run(function, *args, write=write)

    def listener(self, text: str | None) -> str:
        """The listening address ``text`` (checked against the configuration), or ""."""
        if not text:
            return ""
        return self.listening_address(text, AccessRefused, "its rules would never hold")

    @staticmethod
    def pattern(text: str) -> str:
        """``text`` as a normalized address pattern; AccessRefused saying why it is not one."""
        from mailmax.plugins.access.rules import parse_pattern

        try:
            return parse_pattern(text).text
        except ValueError as exc:
            raise AccessRefused(str(exc)) from None

    def implied(self) -> list[dict[str, Any]]:
        """The configuration's rules, as the listing shows them (after the system-wide list)."""
        from mailmax.core.clientrights import config_rules

        settings = self.settings
        out = []
        for position, (name, network, rights) in enumerate(config_rules(settings), start=1):
            kind = "trusted" if rights.trusted else "custom"
            section, key = name.split(".")
            written = key in getattr(settings, section).model_fields_set
            where = f"in {settings.source}" if written and settings.source else "(its default)"
            out.append(
                {
                    "id": None,
                    "where": "config",
                    "listener": "",
                    "position": position,
                    "pattern": self.pattern(network),
                    "kind": kind,
                    "flags": [] if rights.trusted else ["exempt-from-connection-limits"],
                    "source": f"[{section}] {key} {where}",
                    "comment": "",
                }
            )
        return out

    def _missing(self, pattern: str, listener: str) -> NotFound:
        where = f"for listener {listener}" if listener else "system-wide"
        for row in self.implied():
            if row["pattern"] == pattern and not listener:
                return NotFound(
                    f"{pattern} is not a stored rule: it comes from {row['source']}; "
                    "set that in the config file instead (then `mailmax reload`)"
                )
        return NotFound(f"no rule for {pattern} {where}; see the rules with `mailmax access list`")

    def add(
        self,
        pattern: str,
        kind: str,
        *,
        flags: list[str] | tuple[str, ...] = (),
        listener: str | None = None,
        position: int | None = None,
        comment: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Add (or change) the rule for ``pattern``; the record and whether it is new."""
        from mailmax.plugins.access import store
        from mailmax.plugins.access.rules import check_flags

        self.actor.require_system(WHAT)
        normalized = self.pattern(pattern)
        try:
            checked = check_flags(kind.lower(), [f for flag in flags for f in flag.split(",")])
        except ValueError as exc:
            raise AccessRefused(str(exc)) from None
        if position is not None and position < 1:
            raise FieldError("position", "{field} counts from 1 (the first rule)")
        where = self.listener(listener)

        def add(connection: Any) -> Any:
            return store.add(
                connection, where, normalized, kind.lower(), checked, comment, position
            )

        try:
            rule, added = self._run(add, write=True)
        except ValueError as exc:
            raise AccessRefused(str(exc)) from None
        record = rule_record(rule)
        audit(self.directory, self.actor, "access.add" if added else "access.change", normalized,
              where=rule.where, kind=rule.kind, flags=list(rule.flags), position=rule.position,
              comment=comment)  # fmt: skip
        return record, added

    def listing(self, *, listener: str | None = None, system_only: bool = False) -> list[dict]:
        """The rules in the order they are tried: each listener's list, the system-wide list,
        then the configuration's (only the list of ``listener`` or the system-wide one, when
        asked)."""
        from mailmax.plugins.access import store

        if listener and system_only:
            raise AccessRefused("give --listener or --system, not both")
        rules = self._run(store.all_rules)
        if listener:
            where = self.listener(listener)
            return [rule_record(r) for r in rules if r.listener == where]
        ordered = [r for r in rules if r.listener] + [r for r in rules if not r.listener]
        rows = [rule_record(r) for r in ordered if not system_only or not r.listener]
        return rows + self.implied()

    def move(self, pattern: str, position: int, *, listener: str | None = None) -> dict:
        """Move the rule for ``pattern`` to ``position`` in its list (1: tried first)."""
        from mailmax.plugins.access import store

        self.actor.require_system(WHAT)
        if position < 1:
            raise FieldError("position", "{field} counts from 1 (the first rule)")
        normalized = self.pattern(pattern)
        where = self.listener(listener)
        rule = self._run(lambda c: store.move(c, where, normalized, position), write=True)
        if rule is None:
            raise self._missing(normalized, where)
        audit(self.directory, self.actor, "access.move", normalized, where=rule.where,
              position=rule.position)  # fmt: skip
        return rule_record(rule)

    def delete(self, pattern: str, *, listener: str | None = None) -> dict[str, Any]:
        """Delete the rule for ``pattern`` (system-wide, or of ``listener``)."""
        from mailmax.plugins.access import store

        self.actor.require_system(WHAT)
        normalized = self.pattern(pattern)
        where = self.listener(listener)
        rule = self._run(lambda c: store.delete(c, where, normalized), write=True)
        if rule is None:
            raise self._missing(normalized, where)
        audit(self.directory, self.actor, "access.delete", normalized, where=rule.where)
        return rule_record(rule)
