"""Local delivery of one recipient: resolve, expand, choose a folder, store in the Maildir.

Plugin hooks run on the reactor thread (they may return Deferreds); everything that blocks
(directory look-ups, Maildir writes) runs in the runner's delivery threads.

Maildir writes are group-committed: the writes asked for while earlier ones are being done
wait and then go as one thread job, which writes and fsyncs every file, fsyncs each ``new/``
directory once, and only then answers each delivery. At most ``parallel`` such jobs run at a
time, so delivery takes few threads and wake-ups away from accepting mail. With the spool's
writer process doing the writes one job runs at a time: its answer waits for the writer's
next sync anyway, and a second job would only wait for the same sync in a smaller batch.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core import model
from mailmax.core.directory.api import Domain, Lookup, User
from mailmax.core.directory.cached import TTLCache
from mailmax.core.hooks import PluginSet, Scope
from mailmax.core.pluginhost.outcomes import DeliveryDecision
from mailmax.core.queue import overlimit
from mailmax.core.queue.loops import leads_somewhere
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool
from mailmax.core.store import maildir
from mailmax.core.store.maildir import delivery_headers
from mailmax.core.verdicts import Action, Verdict

log = Logger(namespace="mailmax.queue")

MIB = 1024 * 1024

#: Runs a blocking callable in the delivery threads; returns a Deferred of its result.
InThread = Callable[..., defer.Deferred[Any]]


@dataclass
class Outcome:
    """What became of one local recipient in one delivery attempt.

    ``result``: ``delivered`` (stored in ``folder``), ``discarded`` (a plugin handled it),
    ``expanded`` (replaced by ``extra`` addresses), ``rerouted`` (not local any more: goes to
    outbound delivery), ``deferred`` (try again later) or ``failed`` (bounce). ``diagnostic``
    is an SMTP-style reply (``"552 5.2.2 Mailbox full"``) for the last two.
    """

    result: str
    folder: str = ""
    diagnostic: str = ""
    extra: list[str] = field(default_factory=list)
    path: Path | None = None
    #: What a delivery plugin decided, by whom and why (for the mail log), or ``""``.
    note: str = ""
    #: The over-limit notice this delivery made due (see :mod:`.overlimit`), or None.
    notice: overlimit.Notice | None = None


def deferred(text: str, status: str = "4.3.0", code: int = 451) -> Outcome:
    """A temporary failure."""
    return Outcome("deferred", diagnostic=f"{code} {status} {text}")


def failed(text: str, status: str, code: int = 550) -> Outcome:
    """A permanent failure (the sender gets a DSN)."""
    return Outcome("failed", diagnostic=f"{code} {status} {text}")


def to_model(envelope: SpoolEnvelope) -> model.Envelope:
    """The envelope as delivery hooks see it (:class:`mailmax.core.model.Envelope`)."""
    return model.Envelope(
        sender=envelope.sender,
        params=dict(envelope.params),
        recipients=[
            model.Recipient(r.address, r.kind, r.mailbox, dict(r.params))
            for r in envelope.recipients
        ],
        size_hint=envelope.size,
        notes=dict(envelope.notes),
    )


def _domain_of(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    return domain.lower() if at and local else None


def _verdict_outcome(verdict: Verdict) -> Outcome | None:
    """What a verdict from ``mailmax_deliver`` means; None for "no opinion"."""
    text = f"{verdict.text} ({verdict.plugin})" if verdict.plugin else verdict.text
    if verdict.action is Action.CONTINUE:
        return None
    if verdict.action is Action.ACCEPT:
        return Outcome("discarded")
    if verdict.action is Action.REJECT:
        return Outcome("failed", diagnostic=f"{verdict.code} {verdict.status} {text}")
    return Outcome("deferred", diagnostic=f"{verdict.code} {verdict.status} {text}")


def _quarantine_header(decision: DeliveryDecision) -> bytes:
    """The header a quarantined copy is stored with: who quarantined it and why."""
    why = " ".join(f"{decision.plugin}: {decision.reason}".split())
    return f"X-MailMax-Quarantine: {why[:900]}\r\n".encode("utf-8", "replace")


#: What delivery needs to know of a mailbox: its user, the user's domain and the Maildir root.
MailboxInfo = tuple[User | None, Domain | None, str]


class LocalDelivery:
    """Delivers a queued message to one local recipient at a time.

    The user, domain and Maildir of a mailbox are looked up in ``directory`` at most once per
    ``cache_seconds`` (a change made meanwhile shows within that time). At most ``parallel``
    Maildir write jobs run at a time (by default one with the spool's writer process, else two).
    """

    def __init__(
        self,
        *,
        directory: Any,
        in_thread: InThread,
        fsync: bool = True,
        cache_seconds: float = 1.0,
        parallel: int | None = None,
        spool: Spool | None = None,
        cluster: Any = None,
    ) -> None:
        self.directory = directory
        #: This node's :class:`~mailmax.core.cluster.nodes.Cluster`, or None.
        self.cluster = cluster
        self.in_thread = in_thread
        self.fsync = fsync
        self.spool = spool if spool is not None and spool.helper else None
        self._mailboxes: TTLCache[str, MailboxInfo] = TTLCache(self._look_up, cache_seconds)
        if self.spool is not None:
            run: Callable[[list[Any]], defer.Deferred[Any]] = self._store_in_writer
        else:
            run = partial(in_thread, self._store_batch)
        if parallel is None:
            parallel = 1 if self.spool is not None else 2
        self._writes = StoreBatcher(run, parallel)

    def _look_up(self, mailbox: str) -> MailboxInfo:
        """Blocking: the user of ``mailbox``, its domain and its Maildir root (uncached)."""
        user = self.directory.get_user(mailbox)
        if user is None or not user.enabled:
            return user, None, ""
        domain = self.directory.get_domain(user.domain)
        if domain is None:
            return user, None, ""
        return user, domain, str(self.directory.user_maildir(user))

    async def deliver(
        self,
        plugins: PluginSet,
        envelope: SpoolEnvelope,
        index: int,
        message_path: Path,
        *,
        fresh: bool = False,
    ) -> Outcome:
        """Deliver ``envelope.recipients[index]``; never raises (errors become outcomes)."""
        recipient = envelope.recipients[index]
        try:
            return await self._deliver(plugins, envelope, recipient, index, message_path, fresh)
        except Exception as exc:
            log.failure(
                "delivery {queue_id} to {rcpt} failed", queue_id=envelope.id, rcpt=recipient.address
            )
            return deferred(f"Local delivery error: {exc.__class__.__name__}")

    async def _deliver(
        self,
        plugins: PluginSet,
        envelope: SpoolEnvelope,
        recipient: SpoolRecipient,
        index: int,
        message_path: Path,
        fresh: bool,
    ) -> Outcome:
        mailbox = recipient.mailbox
        if not mailbox:
            resolved = await self._resolve(plugins, recipient.address)
            if isinstance(resolved, Outcome):
                return resolved
            mailbox = resolved
        elsewhere = await self._elsewhere(mailbox)
        if elsewhere is not None:
            return elsewhere
        scope = Scope(domain=_domain_of(mailbox), user=mailbox)
        hook_envelope = to_model(envelope)
        try:
            user = await self._user_of(mailbox)
        except Exception as exc:
            log.failure("looking up {mailbox} for delivery failed", mailbox=mailbox)
            return deferred(f"<{mailbox}>: the directory did not answer: {exc}", "4.4.3")
        try:
            expanded = self._expand(plugins, scope, mailbox, hook_envelope, user)
        except Exception:
            log.failure("mailmax_expand_recipient failed for {mailbox}", mailbox=mailbox)
            return deferred("Local error in a delivery plugin")
        extra = [a for a in expanded if a.lower() != mailbox.lower()]
        if expanded and len(extra) == len(expanded):
            return Outcome("expanded", extra=extra)  # no local copy kept
        try:
            decider, choice = await plugins.first_async_from(
                "mailmax_deliver",
                scope,
                mailbox=mailbox,
                envelope=hook_envelope,
                message_path=str(message_path),
                user=user,
            )
        except Exception:
            log.failure("mailmax_deliver failed for {mailbox}", mailbox=mailbox)
            return deferred("Local error in a delivery plugin")
        folder, target, note, header = maildir.INBOX, mailbox, "", b""
        source = message_path
        if isinstance(choice, Verdict):
            verdict_outcome = _verdict_outcome(choice.with_plugin(decider))
            if verdict_outcome is not None:
                verdict_outcome.extra = extra
                verdict_outcome.note = f"decided by {decider}" if decider else ""
                return verdict_outcome
        elif isinstance(choice, DeliveryDecision):
            decision = choice.by(decider)
            note = decision.note()
            if decision.kind == "discard":
                return Outcome("discarded", extra=extra, note=note)
            targets = [a for a in decision.addresses if a.lower() != mailbox.lower()]
            if targets:  # a redirect to the mailbox itself keeps the copy in the INBOX
                return Outcome("expanded", extra=[*targets, *extra], note=note)
            folder = decision.folder or maildir.INBOX
            source = Path(decision.source) if decision.source else message_path
            if decision.kind == "quarantine":
                target = decision.mailbox or mailbox
                header = _quarantine_header(decision)
        elif isinstance(choice, str) and choice:
            folder = choice
        elif choice is not None:
            log.error("mailmax_deliver returned {value!r}; using INBOX", value=choice)
        unique = f"{envelope.id}-{index}"
        skip = envelope.trace_bytes
        # The SMTP server wrote this very delivery's trace headers first: store the file as it is.
        link = skip > 0 and index == 0 and target == recipient.mailbox and not header
        if source != message_path:  # a changed copy, without this delivery's trace lines
            prefix = delivery_headers(envelope.sender, mailbox) + header
            write = (target, folder, source, unique, fresh, prefix, 0, False)
        elif link:
            write = (target, folder, message_path, unique, fresh, b"", 0, True)
        else:
            prefix = delivery_headers(envelope.sender, mailbox) + header
            write = (target, folder, message_path, unique, fresh, prefix, skip, False)
        outcome = await self._writes.submit(write)
        outcome.extra = extra
        outcome.note = note
        if outcome.result == "delivered":
            outcome.notice = await self._over_limit(target)
        return outcome

    async def _user_of(self, mailbox: str) -> User | None:
        """The directory record of ``mailbox`` (cached; the store's look-up reuses it)."""
        info = self._mailboxes.peek(mailbox)
        if info is None:
            info = await self.in_thread(self._mailboxes.get, mailbox)
        return info[0]

    async def _elsewhere(self, mailbox: str) -> Outcome | None:
        """For a mailbox that is not stored here now: on to its home node (``rerouted``), or
        wait while it is being moved; None when it is stored here."""
        if self.cluster is None:  # only a cluster's nodes move mailboxes
            return None
        from mailmax.core.cluster.nodes import Mailbox

        info = self._mailboxes.peek(mailbox)
        if info is None:
            info = await self.in_thread(self._mailboxes.get, mailbox)
        user, domain, _ = info
        if user is None:
            return None
        state, home = self.cluster.where(user, domain)
        if state == Mailbox.MOVING:
            return deferred(f"<{mailbox}>: mailbox is being moved between nodes", "4.2.1")
        if state == Mailbox.ELSEWHERE:
            return Outcome("rerouted", note=f"home node {home}")
        if state == Mailbox.UNKNOWN_NODE:
            return deferred(f"Home node {home!r} of <{mailbox}> is not in [cluster.nodes]", "4.3.5")
        return None

    async def _over_limit(self, mailbox: str) -> overlimit.Notice | None:
        """The over-limit notice due after a delivery to ``mailbox`` (its domain asks for them);
        an error here is logged and never fails the delivery."""
        try:
            info = self._mailboxes.peek(mailbox)
            if info is None:
                info = await self.in_thread(self._mailboxes.get, mailbox)
            user, domain, root = info
            if user is None or domain is None or not overlimit.watched(user, domain):
                return None
            return await self.in_thread(overlimit.check, user, domain, root)
        except Exception:
            log.failure("over-limit check for {mailbox} failed", mailbox=mailbox)
            return None

    async def _resolve(self, plugins: PluginSet, address: str) -> str | Outcome:
        """The mailbox of an address given without one, or what to do instead."""
        targets = plugins.first_result(
            "mailmax_resolve_recipient", Scope(domain=_domain_of(address)), address=address
        )
        if targets:
            return await self._expansion(plugins, address, list(targets))
        found = await self.in_thread(self.directory.lookup_recipient, address)
        if found.status in (Lookup.USER, Lookup.CATCH_ALL) and found.user is not None:
            return found.user.address
        if found.status is Lookup.ALIAS:
            return await self._expansion(plugins, address, list(found.targets))
        if found.status is Lookup.DISABLED:
            return failed(f"<{address}>: mailbox disabled", "5.2.1")
        if found.status is Lookup.NOT_LOCAL:
            return Outcome("rerouted")
        return failed(f"<{address}>: no such user here", "5.1.1")

    async def _expansion(self, plugins: PluginSet, address: str, targets: list[str]) -> Outcome:
        """``address`` replaced by ``targets``, or a failure when they only lead back to it."""
        if await self.in_thread(leads_somewhere, self.directory, plugins, address, targets):
            return Outcome("expanded", extra=targets)
        log.warn("alias loop: {address} -> {targets}", address=address, targets=targets)
        return failed(
            f"<{address}>: alias loop: its targets lead back to it and never to a mailbox",
            "5.4.6",
            554,
        )

    @staticmethod
    def _expand(
        plugins: PluginSet,
        scope: Scope,
        mailbox: str,
        envelope: model.Envelope,
        user: User | None,
    ) -> list[str]:
        """Every address the plugins name for ``mailbox``, merged and de-duplicated."""
        merged: list[str] = []
        seen: set[str] = set()
        for answer in plugins.all_results(
            "mailmax_expand_recipient", scope, mailbox=mailbox, envelope=envelope, user=user
        ):
            for address in answer:
                if isinstance(address, str) and address and address.lower() not in seen:
                    seen.add(address.lower())
                    merged.append(address)
        return merged

    def _store_batch(self, writes: Sequence[StoreRequest]) -> list[Outcome]:
        """Blocking: check each user, store every message, fsync each ``new/`` once.

        A delivery is reported only when its directory is synced; when that fails, the
        deliveries into it are deferred (the next attempt finds the file and keeps it).
        """
        infos = self._look_up_all({write[0] for write in writes})
        plans = [self._plan(write, infos[write[0]]) for write in writes]
        requests = [plan for plan in plans if not isinstance(plan, Outcome)]
        results = iter(maildir.deliver_many(requests, fsync=self.fsync))
        return [
            plan if isinstance(plan, Outcome) else self._outcome(write[0], next(results))
            for write, plan in zip(writes, plans, strict=True)
        ]

    def _store_in_writer(self, writes: Sequence[StoreRequest]) -> defer.Deferred[list[Outcome]]:
        """Reactor thread: the same as :meth:`_store_batch`, with the Maildir writes done by the
        spool's writer process (users looked up in a thread only when not cached)."""
        mailboxes = {write[0] for write in writes}
        cached = {mailbox: self._mailboxes.peek(mailbox) for mailbox in mailboxes}
        if all(info is not None for info in cached.values()):
            infos: defer.Deferred[dict[str, MailboxInfo | Exception]] = defer.succeed(
                cast(dict[str, MailboxInfo | Exception], cached)
            )
        else:
            infos = self.in_thread(self._look_up_all, mailboxes)
        return infos.addCallback(self._write_in_writer, writes)

    def _write_in_writer(
        self, infos: dict[str, MailboxInfo | Exception], writes: Sequence[StoreRequest]
    ) -> defer.Deferred[list[Outcome]]:
        assert self.spool is not None
        plans = [self._plan(write, infos[write[0]]) for write in writes]
        requests = [plan for plan in plans if not isinstance(plan, Outcome)]
        if not requests:
            return defer.succeed(cast(list[Outcome], plans))
        done = self.spool.run_in_writer("deliver", {"fsync": self.fsync, "requests": requests})

        def answered(results: list[list[Any]]) -> list[Outcome]:
            found = iter(results)
            return [
                plan if isinstance(plan, Outcome) else self._outcome(write[0], next(found))
                for write, plan in zip(writes, plans, strict=True)
            ]

        def lost(failure: Failure) -> list[Outcome]:
            log.failure("Maildir writes in the spool writer failed", failure)
            reason = f"Local delivery error: {failure.getErrorMessage()}"
            return [plan if isinstance(plan, Outcome) else deferred(reason) for plan in plans]

        return done.addCallbacks(answered, lost)

    def _look_up_all(self, mailboxes: set[str]) -> dict[str, MailboxInfo | Exception]:
        """Blocking: the cached look-up of every mailbox (an error in place of its answer)."""
        infos: dict[str, MailboxInfo | Exception] = {}
        for mailbox in mailboxes:
            try:
                infos[mailbox] = self._mailboxes.get(mailbox)
            except Exception as exc:
                log.failure("looking up {mailbox} for delivery failed", mailbox=mailbox)
                infos[mailbox] = exc
        return infos

    def _plan(
        self, write: StoreRequest, info: MailboxInfo | Exception
    ) -> Outcome | maildir.DeliveryRequest:
        """The Maildir write for ``write`` after checking its user, or the outcome instead."""
        mailbox, folder, message_path, unique, fresh, prefix, skip, link = write
        if isinstance(info, Exception):
            return deferred(f"Local delivery error: {info.__class__.__name__}")
        user, domain, root = info
        if user is None:
            return failed(f"<{mailbox}>: user no longer exists", "5.1.1")
        if not user.enabled:
            return failed(f"<{mailbox}>: mailbox disabled", "5.2.1")
        if domain is None:
            return deferred(f"<{mailbox}>: the domain {user.domain} cannot be loaded")
        limit = (user.disk_limit_mb or domain.default_box_mb) * MIB
        text = prefix.decode("latin-1")
        return (root, folder, str(message_path), unique, fresh, text, limit, skip, link)

    @staticmethod
    def _outcome(mailbox: str, result: list[Any]) -> Outcome:
        """The outcome of one result of :func:`maildir.deliver_many`."""
        if result[0] == "delivered":
            _, path, folder, note = result
            if note:
                log.error("{mailbox}: {error}; delivering to INBOX", mailbox=mailbox, error=note)
            return Outcome("delivered", folder=folder, path=Path(path))
        if result[0] == "over_quota":
            # Temporary: the box may be emptied; the copy waits and bounces only when the
            # queue's lifetime for it ends.
            _, usage, size, quota = result
            return deferred(
                f"<{mailbox}>: mailbox full ({usage} of {quota} bytes used, message {size} bytes)",
                "4.2.2",
                452,
            )
        _, code, reason = result
        status = "4.3.1" if code in (errno.ENOSPC, errno.EDQUOT) else "4.3.0"
        return deferred(f"<{mailbox}>: cannot write to the mailbox: {reason}", status)


#: One Maildir write: mailbox, folder, spooled message, unique name, fresh, prefix, bytes of
#: the spooled file to leave out, link (see :func:`mailmax.core.store.maildir.deliver`).
StoreRequest = tuple[str, str, Path, str, bool, bytes, int, bool]


class StoreBatcher:
    """Runs work for requests in batches: what is asked while ``parallel`` batches are
    running waits and goes as the next batch.

    ``run(requests)`` returns a Deferred of one result per request (say, a thread job); each
    request's Deferred fires with its result, or fails with the batch's failure.
    """

    def __init__(self, run: Callable[[list[Any]], defer.Deferred[Any]], parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._run = run
        self._parallel = parallel
        self._running = 0
        self._waiting: list[tuple[Any, defer.Deferred[Any]]] = []

    def submit(self, request: Any) -> defer.Deferred[Any]:
        """Queue ``request``; fire with its result once its batch is done."""
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiting.append((request, d))
        if self._running < self._parallel:
            self._start()
        return d

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._running += 1
        done = defer.maybeDeferred(self._run, [request for request, _ in batch])
        done.addBoth(self._finished, batch)

    def _finished(self, results: Sequence[Any] | Failure, batch: list) -> None:
        self._running -= 1
        if self._waiting:
            self._start()
        for index, (_, d) in enumerate(batch):
            if isinstance(results, Failure):
                d.errback(results)
            else:
                d.callback(results[index])


def classify(directory: Any, address: str) -> SpoolRecipient:
    """A spool recipient for ``address`` (blocking): local when one of our domains has it."""
    found = directory.lookup_recipient(address)
    if found.status is Lookup.NOT_LOCAL:
        return SpoolRecipient(address, kind="relay")
    if found.status in (Lookup.USER, Lookup.CATCH_ALL) and found.user is not None:
        return SpoolRecipient(address, kind="local", mailbox=found.user.address)
    return SpoolRecipient(address, kind="local")
