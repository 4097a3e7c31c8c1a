"""rbl: refuse clients listed at DNS block lists, without reverse DNS, or whose MAIL FROM
domain accepts no mail.

The block-list and reverse-DNS look-ups start when the client connects, so their answers are
ready early; they are enforced at RCPT, so that mail to postmaster still gets through
(RFC 5321 4.5.1). The sender-domain look-up starts at MAIL FROM. Each check has an action:
``reject`` (5xx, naming the list), ``tempfail`` (4xx) or ``header`` (accept, add an
``X-MailMax-RBL`` header and log). A DNS that does not answer never refuses for good: the
client gets a 4xx or passes, as ``timeout_action`` says. Authenticated and trusted sessions
are exempt by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import field_validator
from twisted.internet import defer

from mailmax.plugin import (
    Envelope,
    Field,
    MessageChanges,
    PluginSettings,
    Recipient,
    Session,
    check_networks,
    current_host,
    hookimpl,
    reject,
    tempfail,
)
from mailmax.plugins.rbl import checks
from mailmax.plugins.rbl.checks import Finding
from mailmax.plugins.rbl.lists import BlockList, parse_list

NAME = "rbl"
#: Where the plugin can be switched on, off or configured.
SCOPES = ("system", "listener", "domain", "user")
#: The header the ``header`` action adds.
HEADER = "X-MailMax-RBL"
#: Cached answers kept at most per process (oldest dropped first).
MAX_CACHE_ENTRIES = 10000
#: Look-ups one session keeps at most.
MAX_SESSION_LOOKUPS = 32

Action = Literal["reject", "tempfail", "header"]


class Settings(PluginSettings):
    """The lists to ask, the checks to make and what each does to the client."""

    zones: list[str] = Field(
        default_factory=list,
        description='Block lists to ask, in order: "zone" or "zone=CODES", CODES being the'
        ' answers that mean listed ("127.0.0.2-127.0.0.11 127.0.0.20"); without codes any'
        " 127.x.x.x answer. Answers 127.255.255.x (query refused) are ignored and logged.",
    )
    dnsbl_action: Action = Field("reject", description="What a listed client gets.")
    reverse_dns: bool = Field(
        False, description="Require a reverse DNS name that resolves back to the client."
    )
    reverse_dns_action: Action = Field(
        "reject", description="What a client without matching reverse DNS gets."
    )
    sender_domain: bool = Field(
        False, description="Require the MAIL FROM domain to accept mail (MX or address)."
    )
    sender_domain_action: Action = Field(
        "reject", description="What a sender whose domain accepts no mail gets."
    )
    timeout_action: Literal["tempfail", "pass"] = Field(
        "tempfail",
        description="When the DNS does not answer: a temporary refusal, or let the client pass.",
    )
    timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds to wait for all of a client's look-ups."
    )
    cache_seconds: float = Field(
        300.0, ge=0, le=86400, description="How long an answer about an address is reused."
    )
    exempt_authenticated: bool = Field(
        True, description="Never check authenticated sessions (users on dynamic addresses)."
    )
    exempt_trusted: bool = Field(True, description="Never check trusted clients.")
    exempt_networks: list[str] = Field(
        default_factory=list, description="Client addresses or networks never checked."
    )

    @field_validator("zones")
    @classmethod
    def _zones(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_list(value)
        return values

    @field_validator("exempt_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        return check_networks(values)


class Pending:
    """The outcome of a look-up started earlier, awaited by any number of later commands."""

    def __init__(self, started: defer.Deferred[Any]) -> None:
        self.done = False
        self.value: Finding | None = None
        self._waiters: list[defer.Deferred[Finding | None]] = []
        started.addBoth(self._fire)

    def _fire(self, value: Any) -> None:
        self.done, self.value = True, value
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(value)

    def wait(self) -> defer.Deferred[Finding | None]:
        """A Deferred that fires with the outcome."""
        if self.done:
            return defer.succeed(self.value)
        waiter: defer.Deferred[Finding | None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter


@dataclass
class SessionChecks:
    """A session's look-ups by what they ask, and the notes for the ``header`` action."""

    started: dict[Any, Pending] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class AnswerCache:
    """Findings about an address (or a sender domain) reused for ``cache_seconds``."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, float, Finding | None]] = {}

    def get(self, key: Any, now: float) -> tuple[bool, Finding | None]:
        """(True, finding) when a fresh answer is known."""
        entry = self._entries.get(key)
        if entry is None or not entry[0] <= now < entry[1]:
            return False, None
        return True, entry[2]

    def put(self, key: Any, finding: Finding | None, now: float, seconds: float) -> None:
        """Keep ``finding`` for ``seconds`` from ``now`` (temporary findings are never kept)."""
        if finding is not None and finding.temporary:
            return
        self._entries.pop(key, None)
        if len(self._entries) >= MAX_CACHE_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (now, now + seconds, finding)


CACHE = AnswerCache()


def _start(
    session: Session,
    key: Any,
    config: Settings,
    look_up: Callable[[Any], Coroutine[Any, Any, Finding | None]],
) -> Pending:
    """Start (once per session and key) a bounded, cached look-up."""
    state = session.stash.get(SessionChecks)
    pending = state.started.get(key)
    if pending is not None:
        return pending
    if len(state.started) >= MAX_SESSION_LOOKUPS:  # a client changing MAIL FROM without end
        state.started.pop(next(iter(state.started)))
    host = current_host()
    clock = host.clock
    now = clock.seconds()
    known, finding = CACHE.get(key, now)
    if known:
        pending = Pending(defer.succeed(finding))
    else:
        started = defer.ensureDeferred(look_up(host.dns))
        started.addTimeout(config.timeout, clock)

        def done(value: Finding | None) -> Finding | None:
            if config.cache_seconds:
                CACHE.put(key, value, clock.seconds(), config.cache_seconds)
            return value

        def failed(failure: Any) -> Finding:
            if not failure.check(defer.TimeoutError, defer.CancelledError):
                host.for_plugin(NAME).log.failure("look-up {key} failed", failure, key=key)
            return Finding(key[0], 451, "4.4.3", "DNS look-up timed out, try again later", True)

        pending = Pending(started.addCallbacks(done, failed))
    state.started[key] = pending
    return pending


def _exempt(session: Session, config: Settings) -> bool:
    if session.dnsbl_exempt:  # an access rule: "no open-relay check"
        return True
    if config.exempt_authenticated and session.auth_user is not None:
        return True
    if config.exempt_trusted and session.trusted:
        return True
    if config.exempt_networks:
        address = session.peer_address
        return any(
            address in ipaddress.ip_network(net, strict=False) for net in config.exempt_networks
        )
    return False


def _client_checks(session: Session, config: Settings) -> list[Pending]:
    ip = session.peer_ip
    started = []
    if config.zones:
        blocks = tuple(parse_list(zone) for zone in config.zones)
        started.append(_start(session, ("dnsbl", ip, blocks), config, _dnsbl(ip, blocks)))
    if config.reverse_dns:
        started.append(
            _start(session, ("reverse_dns", ip), config, lambda dns: checks.reverse_dns(dns, ip))
        )
    return started


def _dnsbl(ip: str, blocks: tuple[BlockList, ...]) -> Callable[[Any], Any]:
    return lambda dns: checks.dnsbl(dns, ip, blocks)


def _sender_check(session: Session, sender: str, config: Settings) -> list[Pending]:
    if not config.sender_domain or not sender:
        return []
    domain = sender.rpartition("@")[2].lower()
    return [
        _start(
            session,
            ("sender_domain", domain),
            config,
            lambda dns: checks.sender_domain(dns, sender),
        )
    ]


def _verdict(session: Session, finding: Finding, config: Settings) -> Any:
    log = current_host().for_plugin(NAME).log
    if finding.temporary:
        if config.timeout_action == "pass":
            log.info("{ip}: {text} (passed)", ip=session.peer_ip, text=finding.text)
            return None
        return tempfail(finding.text, 451, "4.4.3")
    action = {
        "dnsbl": config.dnsbl_action,
        "reverse_dns": config.reverse_dns_action,
        "sender_domain": config.sender_domain_action,
    }[finding.check]
    log.info("{ip}: {text} ({action})", ip=session.peer_ip, text=finding.text, action=action)
    if action == "reject":
        return reject(finding.text, finding.code, finding.status)
    if action == "tempfail":
        return tempfail(f"{finding.text}, try again later", 450, "4.7.1")
    notes = session.stash.get(SessionChecks).notes
    if finding.text not in notes:
        notes.append(finding.text)
    return None


@hookimpl
def mailmax_connect(session: Session, config: Settings) -> None:
    """Start the block-list and reverse-DNS look-ups so that their answers are ready early."""
    if not _exempt(session, config):
        _client_checks(session, config)


@hookimpl
def mailmax_mail_from(session: Session, sender: str, config: Settings) -> None:
    """Start the sender-domain look-up; a new transaction starts with no header notes."""
    session.stash.get(SessionChecks).notes.clear()
    if not _exempt(session, config):
        _sender_check(session, sender, config)


@hookimpl
async def mailmax_rcpt_to(
    session: Session, envelope: Envelope, recipient: Recipient, config: Settings
) -> Any:
    """Enforce the checks, in the recipient's scope; postmaster is never refused."""
    if _exempt(session, config) or recipient.address.partition("@")[0].lower() == "postmaster":
        return None
    pending = _client_checks(session, config) + _sender_check(session, envelope.sender, config)
    for one in pending:
        finding = await one.wait()
        if finding is not None:
            verdict = _verdict(session, finding, config)
            if verdict is not None:
                return verdict
    return None


@hookimpl
def mailmax_data(session: Session, changes: MessageChanges) -> None:
    """Add a header for each finding whose action is ``header``."""
    for note in session.stash.get(SessionChecks).notes:
        changes.add_header(HEADER, note)
