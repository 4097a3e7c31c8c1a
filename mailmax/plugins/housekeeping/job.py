"""One housekeeping run over the directory's domains and users (blocking; see the plugin).

For each domain whose housekeeping is switched on: messages older than ``remove_after_days``
are expunged from the chosen folders of every user, through the store (the folder's index
and the Maildir files both, so that open IMAP sessions see the expunges as they would another
client's), and the users not logged in for ``inactive_days`` are reported or disabled. A user
never seen to log in counts from the first run that found them so (remembered in the plugin's
key-value store), so a new account is never taken for an idle one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailmax.core.directory.api import AccountType, Domain, DomainType, User
from mailmax.core.hooks import Scope
from mailmax.core.pluginhost.storage import kv_get, kv_set
from mailmax.core.store import maildir
from mailmax.core.store.mailbox import MailStore

DAY = 86400.0
#: The key-value namespace of the plugin (when users were first seen without a login).
PLUGIN = "housekeeping"
#: Domain types whose users have mailboxes here.
_WITH_MAILBOXES = frozenset({DomainType.NORMAL})

#: ``settings_for(scope) -> (enabled, settings)``.
SettingsFor = Callable[[Scope], tuple[bool, Any]]


@dataclass
class Removal:
    """Messages expunged (or, in a dry run, to expunge) from one folder of one user."""

    user: str
    folder: str
    messages: int
    bytes: int


@dataclass
class Inactive:
    """A user not logged in for a domain's ``inactive_days``, and what was done."""

    user: str
    last_login: float | None
    since: float
    action: str


@dataclass
class Report:
    """What a run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    now: float
    domains: list[str] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    inactive: list[Inactive] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json`` and the log)."""
        return asdict(self)


def run(
    directory: Any,
    settings_for: SettingsFor,
    now: float,
    *,
    dry_run: bool = False,
    only_domain: str | None = None,
) -> Report:
    """Housekeep every domain (or ``only_domain``) of ``directory`` at time ``now``."""
    report = Report(dry_run=dry_run, now=now)
    for domain in directory.list_domains():
        if only_domain is not None and domain.name != only_domain.lower():
            continue
        if domain.type not in _WITH_MAILBOXES:
            continue
        enabled, config = settings_for(Scope(domain=domain.name))
        if not enabled or not (config.remove_after_days or config.inactive_days):
            continue
        report.domains.append(domain.name)
        _domain(directory, domain, config, now, dry_run, report)
    return report


def _domain(
    directory: Any, domain: Domain, config: Any, now: float, dry_run: bool, report: Report
) -> None:
    for user in directory.list_users(domain.name):
        if user.account_type is not AccountType.NORMAL:
            continue
        try:
            if config.remove_after_days:
                root = Path(directory.user_maildir(user))
                cutoff = now - config.remove_after_days * DAY
                for folder in config.folders:
                    removal = _clean(root, user, folder, cutoff, dry_run)
                    if removal is not None:
                        report.removed.append(removal)
            if config.inactive_days:
                found = _inactive(directory, user, config, now, dry_run)
                if found is not None:
                    report.inactive.append(found)
        except Exception as exc:  # one user's trouble never stops the others
            report.errors.append(f"{user.address}: {type(exc).__name__}: {exc}")


def _clean(root: Path, user: User, folder: str, cutoff: float, dry_run: bool) -> Removal | None:
    store = MailStore(root)
    if not root.is_dir() or not store.exists(folder):
        return None
    with store.open(folder) as opened:
        old = [m for m in opened.messages() if m.size and m.internaldate < cutoff]
        if not old:
            return None
        if dry_run:
            return Removal(user.address, folder, len(old), sum(m.size for m in old))
        sizes = {m.uid: m.size for m in old}
        done = opened.expunge([m.uid for m in old])
    if not done:
        return None
    freed = sum(sizes[uid] for uid in done)
    maildir.adjust_usage(root, -freed, -len(done))
    return Removal(user.address, folder, len(done), freed)


def _inactive(
    directory: Any, user: User, config: Any, now: float, dry_run: bool
) -> Inactive | None:
    last = directory.last_login(user.address)
    if last is not None:
        since: float = last[2]
    else:
        key = f"first-seen:{user.address.lower()}"
        found, value = kv_get(directory.engine, PLUGIN, key, now)
        if not found:
            if not dry_run:
                kv_set(directory.engine, PLUGIN, key, json.dumps(now), now, None)
            return None
        since = float(value)
    if now - since < config.inactive_days * DAY:
        return None
    action = config.inactive_action
    if action == "disable" and not dry_run:
        directory.edit_user(user.address, account_type=AccountType.DISABLED)
    return Inactive(user.address, last[2] if last else None, since, action)
