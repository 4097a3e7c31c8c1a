"""The rule lists of the system, of each domain and of each user (the CLI and the API).

Rules live in the directory; a running server sees a change within the rules plugin's
``refresh_seconds`` (2 s by default), without a reload. A domain administrator manages the
lists of their domains and of their domains' users; the system list is for system
administrators.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from mailmax.core.directory.errors import DirectoryError, FieldError, NotFound
from mailmax.core.services.actor import audit
from mailmax.core.services.plugintables import PluginTableAdmin

#: The largest message the dry run takes from the API (the CLI reads files of any size).
MAX_TEST_MESSAGE = 10 * 1024 * 1024


class RuleRefused(DirectoryError):
    """A rule request cannot be done as asked; nothing was changed."""


def rule_record(rule: Any) -> dict[str, Any]:
    """A rule as the CLI and the API show it."""
    record = rule.record()
    record["state"] = "enabled" if rule.enabled else "disabled"
    record["summary"] = " & ".join(record["conditions"]) + " -> " + "; ".join(record["actions"])
    return record


class RuleAdmin(PluginTableAdmin):
    """Rules for ``actor`` on the system of ``settings`` and ``directory``."""

    MODULE = "mailmax.plugins.rules"

    def config(self) -> Any:
        """The rules plugin's system settings, from the config file."""
        plugin = self.plugin()
        table = self.settings.plugins.settings.get(plugin.NAME, {})
        try:
            return plugin.Settings(**table)
        except ValueError as exc:
            raise RuleRefused(f"[plugins.settings.rules] in the config file: {exc}") from None

    def scope(self, system: bool, domain: str | None, user: str | None) -> tuple[str, str]:
        """The list named by exactly one of ``system``, ``domain`` and ``user``, if this
        actor may manage it."""
        if sum(bool(x) for x in (system, domain, user)) != 1:
            raise RuleRefused("give exactly one of --system, --domain DOMAIN and --user ADDRESS")
        if domain:
            from mailmax.core.services.domains import get_domain

            return "domain", get_domain(self.directory, self.actor, domain).name.lower()
        if user:
            from mailmax.core.services.users import get_user

            return "user", get_user(self.directory, self.actor, user).address.lower()
        self.actor.require_system("the system's rules")
        return "system", ""

    def _may_see(self, rule: Any) -> bool:
        if self.actor.system:
            return True
        if rule.scope == "system":
            return False
        from mailmax.core.services.users import domain_of

        value = rule.scope_value
        domain = value if rule.scope == "domain" else domain_of(self.directory, value)
        return self.actor.may_manage(domain)

    def _make(self, scope: tuple[str, str], name: str, conditions: Any, actions: Any,
              **kw: Any) -> Any:  # fmt: skip
        from mailmax.plugins.rules.model import make_rule
        from mailmax.plugins.rules.syntax import RuleError

        config = self.config()
        try:
            return make_rule(*scope, name, list(conditions), list(actions),
                             allowed_programs=config.allowed_programs,
                             reply_folder=config.reply_folder, **kw)  # fmt: skip
        except RuleError as exc:
            raise RuleRefused(f"{exc}; nothing was changed") from None

    def _save(self, rule: Any, **kw: Any) -> Any:
        from mailmax.plugins.rules import store

        try:
            return self._run(lambda c: store.save(c, rule, **kw), write=True)
        except ValueError as exc:
            raise RuleRefused(f"{exc}; nothing was changed") from None

    def find(self, scope: tuple[str, str], name: str) -> Any:
        """The rule ``name`` of the list ``scope``; NotFound if the list has none."""
        from mailmax.plugins.rules import store

        rule = self._run(store.find, *scope, name)
        if rule is None:
            where = scope[0] if scope[0] == "system" else f"{scope[0]} {scope[1]}"
            raise NotFound(
                f"the {where} list has no rule {name!r}; see its rules with `mailmax rule list`"
            )
        return rule

    def listing(self, scope: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """The rules of one list, or of every list this actor may see, in the order they run."""
        from mailmax.plugins.rules import store

        rules = self._run(store.listing, *scope) if scope else self._run(store.everything)
        return [rule_record(r) for r in rules if self._may_see(r)]

    def add(self, scope: tuple[str, str], name: str, conditions: Any, actions: Any, *,
            position: int = 0, enabled: bool = True) -> dict[str, Any]:  # fmt: skip
        """Add the rule ``name`` at ``position`` (1 first; 0 last)."""
        if position < 0:
            raise FieldError("position", "{field} counts from 1 (the first rule)")
        rule = self._make(scope, name, conditions, actions, enabled=enabled, position=position)
        saved = self._save(rule)
        record = rule_record(saved)
        audit(self.directory, self.actor, "rule.add", saved.name, where=saved.where,
              conditions=record["conditions"], actions=record["actions"],
              enabled=saved.enabled, position=saved.position)  # fmt: skip
        return record

    def edit(self, scope: tuple[str, str], name: str, *, new_name: str | None = None,
             conditions: Any = (), actions: Any = ()) -> dict[str, Any]:  # fmt: skip
        """Change the rule ``name``: conditions replace all its conditions, actions all its
        actions (empty: kept)."""
        old = self.find(scope, name)
        current = old.record()
        rule = self._make(scope, new_name if new_name is not None else old.name,
                          conditions or current["conditions"], actions or current["actions"],
                          enabled=old.enabled)  # fmt: skip
        saved = self._save(rule, old_name=old.name)
        record = rule_record(saved)
        audit(self.directory, self.actor, "rule.edit", old.name, where=saved.where,
              name=saved.name, conditions=record["conditions"],
              actions=record["actions"])  # fmt: skip
        return record

    def move(self, scope: tuple[str, str], name: str, position: int) -> dict[str, Any]:
        """Move the rule ``name`` to ``position`` (1 first; past the end: last)."""
        from mailmax.plugins.rules import store

        if position < 1:
            raise FieldError("position", "{field} counts from 1 (the first rule)")
        self.find(scope, name)
        moved = self._run(store.move, *scope, name, position, write=True)
        audit(self.directory, self.actor, "rule.move", name, where=moved.where,
              position=moved.position)  # fmt: skip
        return rule_record(moved)

    def switch(self, scope: tuple[str, str], name: str, on: bool) -> tuple[dict[str, Any], bool]:
        """Switch the rule ``name`` on or off; the record and whether it changed."""
        from mailmax.plugins.rules import store

        rule = self.find(scope, name)
        if rule.enabled == on:
            return rule_record(rule), False
        self._run(store.set_enabled, *scope, name, on, write=True)
        audit(self.directory, self.actor, "rule.enable" if on else "rule.disable", name,
              where=rule.where)  # fmt: skip
        return rule_record(self.find(scope, name)), True

    def delete(self, scope: tuple[str, str], name: str) -> dict[str, Any]:
        """Delete the rule ``name``; the rules after it move up."""
        from mailmax.plugins.rules import store

        rule = self.find(scope, name)
        self._run(store.delete, *scope, name, write=True)
        audit(self.directory, self.actor, "rule.delete", name, where=rule.where)
        return rule_record(rule)

    def moment(self, text: str | None) -> datetime.datetime:
        """The server-local time ``text`` (ISO; now when None) in the rules' time zone."""
        plugin = self.plugin()
        zone = self.config().time_zone
        if text is None:
            return plugin.local_time(time.time(), zone)
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(
                "at", f"{{field}} {text!r} is not a date and time like 2027-01-31T18:00"
            ) from None
        if moment.tzinfo is None:
            local = plugin.local_time(time.time(), zone).tzinfo
            moment = moment.replace(tzinfo=local)
        return plugin.local_time(moment.timestamp(), zone)

    def test(self, user: str, messages: list[bytes], at: str | None = None) -> dict[str, Any]:
        """Run each message through the rules that apply to ``user``, changing nothing: which
        rules matched and what would be done. Test programs do run (in a temporary folder,
        removed afterwards)."""
        from mailmax.plugins.rules import store
        from mailmax.plugins.rules.dryrun import dry_run

        config = self.config()
        _, address = self.scope(False, None, user)
        keys = self.plugin().list_keys(address)
        found = self._run(store.lists, keys)
        rules = [rule for key in keys for rule in found[key]]
        now = self.moment(at)
        scratch = self.settings.data_dir / "rules" / "run"
        results = []
        for data in messages:
            notes: list[str] = []
            plan = asyncio.run(dry_run(rules, data, now, config, scratch, notes))
            results.append({**plan.record(), "log": notes, "lines": [*notes, *plan.lines()]})
        return {"user": address, "at": now.isoformat(), "messages": results}
