"""Whose scope each SMTP hook runs in, and the data phase for many recipients.

The SMTP server and :class:`mailmax.testing.PluginHarness` both use this module, so a plugin
behaves in its unit tests exactly as in the server:

- connection hooks (``connect``, ``helo``) run with the system and the listening address
  (:func:`connection_scope`); ``auth`` adds the user who just proved their credentials
  (:func:`login_scope`);
- ``mail_from`` adds the sender's domain and user when the session is authenticated as a
  local user (:func:`sender_scope`);
- ``rcpt_to`` and ``data`` run with each recipient's domain and user
  (:func:`recipient_scope`).

``mailmax_data`` gives a verdict per recipient: recipients whose data-phase plugins (and
their settings) are the same form one group, each group's plugins run once, and
:func:`decide` turns the groups' verdicts into the one reply of the end of DATA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from mailmax.core import verdicts
from mailmax.core.hooks import PluginError, PluginSet, Scope
from mailmax.core.model import Envelope, Recipient, Session
from mailmax.core.pluginhost.changes import ChangeError, MessageChanges, received_count
from mailmax.core.verdicts import Action, Verdict

log = Logger(namespace="mailmax.plugins")

HOOK = "mailmax_data"

#: What a recipient's data-phase plugins are: ``(name, settings)`` of each enabled one.
Profile = tuple[tuple[str, Any], ...]


# ---------------------------------------------------------------------- scopes
def connection_scope(listener: str | None) -> Scope:
    """The scope of connection hooks: the system plus the listening address."""
    return Scope(listener=listener or None)


def _domain_of(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    return domain.lower() if at and local and domain else None


def login_scope(username: str, listener: str | None) -> Scope:
    """The scope of ``auth``: the listening address plus the user whose credentials were just
    proven (and their domain), as for POP3 and IMAP log-ins."""
    return Scope(domain=_domain_of(username), user=username.lower(), listener=listener or None)


def sender_scope(session: Session, listener: str | None) -> Scope:
    """The scope of ``mail_from``: the listening address, plus the sender's domain and user
    when the session is authenticated as a local user (an unauthenticated sender's address
    proves nothing, so it never selects a scope)."""
    user = session.auth_user
    if not user:
        return connection_scope(listener)
    return Scope(domain=_domain_of(user), user=user.lower(), listener=listener or None)


def recipient_scope(recipient: Recipient, domain: str | None, listener: str | None) -> Scope:
    """The scope of a recipient: its domain (when one of ours) and mailbox, and the listener."""
    return Scope(domain=domain, user=recipient.mailbox or None, listener=listener or None)


def harness_recipient_scope(recipient: Recipient, listener: str | None) -> Scope:
    """:func:`recipient_scope` for a recipient known only by its addresses (test kits)."""
    if recipient.kind != "local":
        return connection_scope(listener)
    return recipient_scope(recipient, _domain_of(recipient.mailbox or recipient.address), listener)


# ---------------------------------------------------------------------- profiles
def data_profile(plugins: PluginSet, scope: Scope) -> Profile:
    """The enabled data-phase plugins of ``scope`` with their settings (PluginError for a bad
    stored setting). Recipients with equal profiles always get the same data verdict."""
    implementations = plugins.implementations(HOOK)
    if not implementations:
        return ()
    out = []
    for plugin, _impl in implementations:
        enabled, settings = plugins.resolve(plugin, scope)
        if enabled:
            out.append((plugin.name, settings))
    return tuple(out)


def splits_transactions(session: Session) -> bool:
    """True when recipients with different data-phase plugins go in separate transactions:
    a plain MTA-to-MTA session (port 25, not authenticated, not trusted, no relay right).
    Mail clients (submission, authenticated, trusted) are never asked to split."""
    return session.service == "smtp" and not session.may_relay


# ---------------------------------------------------------------------- the data phase
@dataclass
class GroupVerdict:
    """The data verdict for recipients that share their data-phase plugins."""

    recipients: list[Recipient]
    verdict: Verdict
    #: The message for these recipients, with their plugins' changes made.
    message: bytes
    #: The plugins that changed it (empty: unchanged).
    changed_by: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """True when the verdict refuses the message for these recipients."""
        return self.verdict.decisive and self.verdict.action is not Action.ACCEPT


@dataclass(frozen=True)
class Limits:
    """The limits a changed message must still meet."""

    max_size: int
    max_hops: int


def group_recipients(
    plugins: PluginSet, recipients: Sequence[Recipient], scopes: Sequence[Scope]
) -> list[tuple[Scope, list[Recipient]]]:
    """Recipients grouped by data-phase profile, in first-seen order, each with one scope.

    A recipient whose settings cannot be read forms a group of its own, so that its group's
    hook run gives the temporary failure.
    """
    if plugins.scope_free(HOOK):  # the common case: one group, nothing to resolve
        return [(scopes[0], list(recipients))]
    groups: list[tuple[Profile | None, Scope, list[Recipient]]] = []
    for recipient, scope in zip(recipients, scopes, strict=True):
        try:
            profile: Profile | None = data_profile(plugins, scope)
        except PluginError:
            profile = None
        for known, _, members in groups:
            if profile is not None and known == profile:
                members.append(recipient)
                break
        else:
            groups.append((profile, scope, [recipient]))
    return [(scope, members) for _, scope, members in groups]


async def run_data(
    plugins: PluginSet,
    session: Session,
    envelope: Envelope,
    message: bytes,
    scopes: Sequence[Scope],
    limits: Limits,
    extra: Mapping[str, Any] | None = None,
) -> list[GroupVerdict]:
    """Run ``mailmax_data`` once per group of recipients (see :func:`group_recipients`).

    Each group's plugins see an envelope with only that group's recipients and record their
    message changes on their own :class:`MessageChanges`; the changes are made once, after
    the group's last plugin, and the result must still meet ``limits``.
    """
    out = []
    groups = group_recipients(plugins, envelope.recipients, scopes)
    for scope, members in groups:
        view = envelope
        if len(groups) > 1:
            view = Envelope(
                sender=envelope.sender,
                params=envelope.params,
                recipients=members,
                size_hint=envelope.size_hint,
                stash=envelope.stash,
            )
        changes = MessageChanges()
        verdict = await plugins.run_policy(
            HOOK,
            scope,
            session=session,
            envelope=view,
            message=message,
            changes=changes,
            **(extra or {}),
        )
        group = GroupVerdict(members, verdict, message)
        if not group.refused and not changes.empty:
            _apply(group, changes, limits)
        out.append(group)
    return out


def _apply(group: GroupVerdict, changes: MessageChanges, limits: Limits) -> None:
    who = ", ".join(changes.plugins) or "a plugin"
    try:
        changed = changes.apply(group.message)
    except ChangeError as exc:
        log.error("message change by {who} failed: {error}", who=who, error=str(exc))
        group.verdict = verdicts.tempfail(
            "Local error in a message change, try again later", 451, "4.3.0"
        ).with_plugin(who)
        return
    if len(changed) > limits.max_size:
        group.verdict = verdicts.reject(
            f"Message too big after changes by {who}: the limit is {limits.max_size} bytes",
            552,
            "5.3.4",
        ).with_plugin(who)
        return
    hops = received_count(changed)
    if hops > limits.max_hops:
        group.verdict = verdicts.reject(
            f"Too many hops ({hops} Received headers) after changes by {who}: mail loop?",
            554,
            "5.4.6",
        ).with_plugin(who)
        return
    group.message, group.changed_by = changed, list(changes.plugins)


@dataclass
class DataDecision:
    """What the end of DATA answers and what is spooled.

    ``refusal`` is the reply refusing the whole message (every recipient refused it), or
    ``None``; then ``copies`` lists each distinct message with its recipients, and
    ``refused`` the recipients whose own verdict refused it (their copy is returned to the
    sender, who is local or trusted on the sessions where this can happen).
    """

    refusal: Verdict | None
    copies: list[GroupVerdict] = field(default_factory=list)
    refused: list[GroupVerdict] = field(default_factory=list)

    def reply(self) -> Verdict:
        """The one reply for all recipients: the refusal, or ``accept()``."""
        return self.refusal if self.refusal is not None else verdicts.accept()


#: Which refusal answers for all when every group refuses, but differently: one that lets the
#: client retry wins over a permanent one (a recipient whose plugins said "later" must not lose
#: its mail), and a disconnect over both.
_SEVERITY = {Action.DISCONNECT: 0, Action.TEMPFAIL: 1, Action.REJECT: 2}


def decide(groups: Sequence[GroupVerdict]) -> DataDecision:
    """One reply for the groups' verdicts (see :class:`DataDecision`)."""
    if len(groups) == 1:
        group = groups[0]
        if group.refused:
            return DataDecision(group.verdict, refused=[group])
        return DataDecision(None, [group])
    refused = [g for g in groups if g.refused]
    if refused and len(refused) == len(groups):
        chosen = min(refused, key=lambda g: _SEVERITY.get(g.verdict.action, 3))
        return DataDecision(chosen.verdict, refused=list(refused))
    copies: list[GroupVerdict] = []
    for group in groups:
        if group.refused:
            continue
        same = next((c for c in copies if c.message == group.message), None)
        if same is None:
            copies.append(
                GroupVerdict(
                    list(group.recipients), group.verdict, group.message, list(group.changed_by)
                )
            )
        else:
            same.recipients.extend(group.recipients)
    return DataDecision(None, copies, refused)
