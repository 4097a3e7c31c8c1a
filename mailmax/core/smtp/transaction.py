"""The mail transaction of an SMTP session: MAIL, RCPT, DATA and the commit to the spool.

A mixin of :class:`~mailmax.core.smtp.server.SMTPServer`, kept apart so each file has one job:
this one decides who may send what to whom and when a message is accepted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from mailmax.core.directory.api import Lookup, RecipientLookup
from mailmax.core.hooks import PluginError, Scope
from mailmax.core.logfile import mail_logger
from mailmax.core.model import Envelope, Recipient, kept_notes
from mailmax.core.pluginhost import dataphase
from mailmax.core.smtp import commands, quota
from mailmax.core.smtp.commands import Address, SMTPRefusal, SMTPReplyError
from mailmax.core.smtp.data import DataReader
from mailmax.core.smtp.received import protocol_name, received_header
from mailmax.core.spool import trace
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.store.maildir import delivery_headers
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.smtp.server import SMTPServer

    _Base = SMTPServer
else:
    _Base = object

log = Logger(namespace="mailmax.smtp")
#: The per-message lines (the mail log; see :mod:`mailmax.core.logfile`).
mail_log = mail_logger("mailmax.smtp")
#: Most bytes of a message text an event of the ``data`` category carries.
MAX_DATA_EVENT = 64 * 1024

_LOCAL = frozenset({Lookup.USER, Lookup.CATCH_ALL, Lookup.ALIAS})
#: A RCPT already answered (452 or 451) while checking its data-phase plugins.
_SPLIT = object()


def _relay_denied() -> SMTPRefusal:
    return SMTPRefusal(554, "5.7.1", "Relay access denied")


class TransactionMixin(_Base):
    """MAIL FROM, RCPT TO and DATA for :class:`SMTPServer`."""

    recipient_limits: list[int]
    #: RCPT commands accepted in this transaction, a repeated recipient included.
    rcpt_commands: int
    #: The scope of each accepted recipient (the data hook runs in each).
    recipient_scopes: list[Scope]
    #: The data-phase plugins of the first accepted recipient (on sessions that split).
    data_profile: Any
    #: The directory's answer for each accepted recipient whose mailbox has a disk limit
    #: (None for the others): the end of DATA refuses a message that fits none of them.
    recipient_boxes: list[RecipientLookup | None]

    # ------------------------------------------------------------------ MAIL
    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME] [AUTH=...]."""
        session = self.session
        assert session is not None
        if not session.helo:
            raise SMTPReplyError(503, "5.5.1", "Send HELO or EHLO first")
        if self.envelope is not None:
            raise SMTPReplyError(503, "5.5.1", "Nested MAIL command")
        if (
            session.service in self.limits.require_auth_on
            and session.auth_user is None
            and not session.trusted
            and not session.auth_exempt
            and not self._mailbox_login_allows_relay()
        ):
            raise SMTPReplyError(530, "5.7.0", "Authentication required")
        sender, params = commands.parse_mail(arg)
        if params and not session.esmtp:
            raise SMTPReplyError(555, "5.5.4", "Parameters need EHLO")
        size = self._check_mail_params(params)
        limit = self.limits.session_message_limit
        if limit and session.messages >= limit:
            self._reply(452, "4.7.0", "Too many messages in this session, reconnect to send more")
            return
        byte_limit = self.limits.session_byte_limit
        if byte_limit and session.bytes_received + size > byte_limit:
            self._reply(452, "4.7.0", "Session byte limit reached, reconnect to send more")
            return
        if size > self.limits.max_message_size:
            self._reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
            return
        params.pop("AUTH", None)  # RFC 4954 5: a client's claim, never passed on
        envelope = Envelope(sender=str(sender) if sender else "", params=params, size_hint=size)
        verdict = await self._policy(
            "mailmax_mail_from",
            dataphase.sender_scope(session, self.listener.address),
            envelope=envelope,
            sender=envelope.sender,
        )
        if self.refused(verdict):
            return
        self.envelope = envelope
        self.recipient_limits = []
        self.recipient_scopes = []
        self.rcpt_commands = 0
        self.recipient_boxes = []
        self.data_profile = None
        self._reply(250, "2.1.0", "Ok")

    @staticmethod
    def _check_mail_params(params: dict[str, str]) -> int:
        size = 0
        for key, value in params.items():
            if key == "SIZE":
                if not value.isdigit() or len(value) > 20:
                    raise SMTPReplyError(501, "5.5.4", "Bad SIZE parameter")
                size = int(value)
            elif key == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    raise SMTPReplyError(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
            elif key == "AUTH":
                continue
            else:
                raise SMTPReplyError(555, "5.5.4", f"Unsupported parameter {key}")
        return size

    # ------------------------------------------------------------------ RCPT
    async def smtp_RCPT(self, arg: str) -> None:
        """RCPT TO:<recipient>: a local mailbox, or a remote one when this client may relay.

        A refused recipient (unknown, disabled, relaying denied) goes to the
        ``mailmax_rcpt_refused`` plugins before the refusal is sent."""
        try:
            await self._rcpt(arg)
        except SMTPRefusal as refusal:
            envelope = self.envelope
            if envelope is None or self.plugins is None:
                raise
            if not self.plugins.implementations("mailmax_rcpt_refused"):
                raise
            verdict = await self._policy(
                "mailmax_rcpt_refused",
                envelope=envelope,
                address=self._refused_address,
                code=refusal.code,
                status=refusal.status,
            )
            if verdict.action is Action.DISCONNECT:
                self.refused(verdict)
                return
            raise

    async def _rcpt(self, arg: str) -> None:
        session, envelope = self.session, self.envelope
        assert session is not None
        if envelope is None:
            raise SMTPReplyError(503, "5.5.1", "Need MAIL command")
        address, params = commands.parse_rcpt(arg)
        if params:
            raise SMTPReplyError(555, "5.5.4", f"Unsupported parameter {next(iter(params))}")
        if not address.domain:  # <postmaster> (RFC 5321 4.5.1)
            address = Address("postmaster", self.listener.default_domain or self.hostname)
        if self.rcpt_commands >= self.limits.max_recipients:
            self._reply(452, "4.5.3", "Too many recipients")
            return
        text = self._refused_address = str(address)
        lookup: RecipientLookup | None = None
        if address.literal:
            # An IP literal is never one of our domains, even when it is our own address.
            kind, mailbox = "relay", ""
        else:
            if address.routing_hack and not session.may_relay:
                raise _relay_denied()
            lookup = await self.directory.lookup_recipient(text)
            kind, mailbox = self._classify(lookup, text)
        # Mail for our own relay-to-host, backup-MX and ETRN domains is accepted from anyone
        # (we are an MX for them); every other remote domain needs relay rights.
        hosted = lookup is not None and lookup.domain is not None
        if (
            kind == "relay"
            and not hosted
            and (
                session.local_only
                or (not session.may_relay and not self._mailbox_login_allows_relay())
            )
        ):
            raise _relay_denied()
        limit = self._recipient_limit(lookup)
        if limit and envelope.size_hint > limit:
            self._reply(552, "5.3.4", f"Message too big for <{text}> (limit {limit} bytes)")
            return
        box = lookup if kind == "local" and quota.limit_of(lookup) else None
        if box is not None and envelope.size_hint:
            sync = self.directory.sync
            if await self.directory.run(quota.is_full, sync, box, envelope.size_hint):
                # Not an error of the client's: the box may be emptied, so try again later.
                self._reply(452, "4.2.2", f"<{text}>: Mailbox full, try again later")
                return
        recipient = Recipient(address=text, kind=kind, mailbox=mailbox, params=params)
        scope = dataphase.recipient_scope(
            recipient,
            lookup.domain.name if lookup and lookup.domain else None,
            self.listener.address,
        )
        profile = self._data_profile(scope)
        if profile is _SPLIT:
            return
        verdict = await self._policy(
            "mailmax_rcpt_to", scope, envelope=envelope, recipient=recipient
        )
        if self.refused(verdict):
            return
        if self.envelope is not envelope:  # the session was reset meanwhile
            return
        self.rcpt_commands += 1
        if all(r.address.lower() != text.lower() for r in envelope.recipients):
            envelope.recipients.append(recipient)
            self.recipient_limits.append(limit)
            self.recipient_scopes.append(scope)
            self.recipient_boxes.append(box)
            if self.data_profile is None:
                self.data_profile = profile
        self._reply(250, "2.1.5", "Ok")

    def _data_profile(self, scope: Scope) -> Any:
        """The recipient's data-phase profile on a session that keeps transactions
        homogeneous (None elsewhere), or ``_SPLIT`` once this RCPT has been answered 452."""
        session, envelope = self.session, self.envelope
        assert session is not None and envelope is not None and self.plugins is not None
        if not dataphase.splits_transactions(session) or self.plugins.scope_free(dataphase.HOOK):
            return None  # every recipient has the same data-phase plugins
        try:
            profile = dataphase.data_profile(self.plugins, scope)
        except PluginError as exc:
            log.error("RCPT not accepted: {error}", error=str(exc))
            self._reply(451, "4.3.0", "Local error in policy configuration, try again later")
            return _SPLIT
        if envelope.recipients and profile != self.data_profile:
            # Not an error of the client's: never counted toward error limits.
            self._reply(
                452, "4.5.3", "Recipient has other content checks: send it in a new transaction"
            )
            return _SPLIT
        return profile

    def _mailbox_login_allows_relay(self) -> bool:
        """POP/IMAP-before-SMTP: a recent mailbox login from this IP lets it relay."""
        session = self.session
        assert session is not None
        minutes = self.limits.pop_before_smtp_minutes
        if not minutes:
            return False
        who = self.factory.logins.recent(session.peer_ip, minutes * 60)
        if who is None:
            return False
        if not session.relay_allowed:
            session.relay_allowed = True
            log.info(
                "session {session_id} may relay: {who} logged in from {ip} within {minutes} min",
                session_id=session.session_id,
                who=who,
                ip=session.peer_ip,
                minutes=minutes,
            )
        return True

    @staticmethod
    def _classify(lookup: RecipientLookup, text: str) -> tuple[str, str]:
        if lookup.status in _LOCAL:
            return "local", lookup.mailbox
        if lookup.status is Lookup.UNKNOWN_USER:
            raise SMTPRefusal(550, "5.1.1", f"<{text}>: Recipient address rejected: User unknown")
        if lookup.status is Lookup.DISABLED:
            raise SMTPRefusal(550, "5.2.1", f"<{text}>: Mailbox disabled")
        return "relay", ""

    @staticmethod
    def _recipient_limit(lookup: RecipientLookup | None) -> int:
        if lookup is None:
            return 0
        limits = [
            value
            for value in (
                lookup.user.max_message_size if lookup.user else 0,
                lookup.domain.max_message_size if lookup.domain else 0,
            )
            if value
        ]
        return min(limits) if limits else 0

    # ------------------------------------------------------------------ DATA
    def smtp_DATA(self, arg: str) -> None:
        """DATA: switch to the raw reader (the message ends only with CRLF.CRLF)."""
        if arg:
            raise SMTPReplyError(501, "5.5.4", "Syntax: DATA")
        if self.envelope is None:
            raise SMTPReplyError(503, "5.5.1", "Need MAIL command")
        if not self.envelope.recipients:
            raise SMTPReplyError(554, "5.5.1", "No valid recipients")
        self._reader = DataReader(self._size_limit(), self.limits.max_data_line)
        self._mode = "data"
        self._write(b"354 End data with <CR><LF>.<CR><LF>")

    def _size_limit(self) -> int:
        return min([self.limits.max_message_size, *(n for n in self.recipient_limits if n)])

    async def finish_message(self) -> None:
        """The message ended: check it, run the data hook, commit it, then answer."""
        self._dot_at = trace.now() if trace.TRACE is not None else 0.0
        try:
            await self._finish_message()
        finally:
            self._committing = False

    async def _finish_message(self) -> None:
        reader, envelope, session = self._reader, self.envelope, self.session
        assert reader is not None and envelope is not None and session is not None
        scopes, boxes = self.recipient_scopes, self.recipient_boxes
        self._reader = None
        self.reset_transaction()
        result = reader.result
        limits = self.limits
        problem = result.problem(reader.max_size, limits.max_data_line, limits.max_hops)
        if problem is not None:
            self.reply_error(problem)
            return
        byte_limit = limits.session_byte_limit
        if byte_limit and session.bytes_received + result.size > byte_limit:
            if result.size > byte_limit:
                self._reply(552, "5.3.4", "Message exceeds the session byte limit")
            else:
                self._reply(452, "4.7.0", "Session byte limit reached, reconnect to send more")
            return
        if boxes and all(boxes) and await self._every_box_full(boxes, result.size):
            return
        assert self.plugins is not None
        if self.plugins.implementations(dataphase.HOOK):  # joining a big message costs a copy
            decision = dataphase.decide(
                await dataphase.run_data(
                    self.plugins,
                    session,
                    envelope,
                    result.message,
                    scopes,
                    dataphase.Limits(reader.max_size, limits.max_hops),
                )
            )
            if decision.refusal is not None and self.refused(decision.refusal):
                return
            await self._spool_copies(envelope, decision, result.size)
            return
        copy = self._prepare_copy(envelope, envelope.recipients, result.chunks)
        await self._commit(envelope, [copy], result.size)

    async def _every_box_full(self, boxes: list[RecipientLookup | None], size: int) -> bool:
        """Answer ``452 4.2.2`` when the message fits none of its recipients' mailboxes."""
        if not await self.directory.run(quota.all_full, self.directory.sync, boxes, size):
            return False
        self._reply(452, "4.2.2", "Mailbox full for every recipient, try again later")
        return True

    async def _spool_copies(
        self, envelope: Envelope, decision: dataphase.DataDecision, size: int
    ) -> None:
        """Spool one copy per distinct (changed) message; the recipients refused by their own
        data verdict ride along in the first copy as failed, so the sender gets them back."""
        failed = [(r, group.verdict) for group in decision.refused for r in group.recipients]
        copies = []
        for index, group in enumerate(decision.copies):
            copies.append(
                self._prepare_copy(
                    envelope, group.recipients, [group.message], failed if index == 0 else []
                )
            )
            if group.changed_by:
                log.info(
                    "message changed by {plugins} for {rcpts}",
                    plugins=",".join(group.changed_by),
                    rcpts=",".join(r.address for r in group.recipients),
                )
        await self._commit(envelope, copies, size)

    def _prepare_copy(
        self,
        envelope: Envelope,
        recipients: list[Recipient],
        chunks: list[bytes],
        failed: list[tuple[Recipient, Any]] = (),  # type: ignore[assignment]
    ) -> tuple[SpoolEnvelope, list[bytes]]:
        """The spool envelope and the file's chunks (our Received header first) of one copy."""
        session = self.session
        assert session is not None
        queue_id = self.spool.new_id()
        header = received_header(
            helo=session.helo,
            client_ip=session.peer_ip,
            hostname=self.hostname,
            protocol=protocol_name(session.esmtp, session.tls, session.auth_user is not None),
            queue_id=queue_id,
            recipients=[r.address for r in recipients],
        )
        spooled = SpoolEnvelope(
            id=queue_id,
            sender=envelope.sender,
            recipients=[
                SpoolRecipient(address=r.address, kind=r.kind, mailbox=r.mailbox, params=r.params)
                for r in recipients
            ],
            received_at=time.time(),
            client_ip=session.peer_ip,
            helo=session.helo,
            auth_user=session.auth_user,
            session_id=session.session_id,
            params=dict(envelope.params),
            notes=kept_notes(envelope.notes),
        )
        for recipient, verdict in failed:
            note = f" ({verdict.plugin})" if verdict.plugin else ""
            spooled.recipients.append(
                SpoolRecipient(
                    address=recipient.address,
                    kind=recipient.kind,
                    mailbox=recipient.mailbox,
                    params=recipient.params,
                    state="failed",
                    last_error=f"{verdict.code} {verdict.status} {verdict.text}{note}",
                )
            )
        only = recipients[0]
        if len(recipients) == 1 and only.kind == "local" and only.mailbox:
            # Its delivery will then hard-link the spooled file into the Maildir.
            trace = delivery_headers(envelope.sender, only.mailbox)
            spooled.trace_bytes = len(trace)
            header = trace + header
        return spooled, [header, *chunks]

    async def _commit(
        self, envelope: Envelope, copies: list[tuple[SpoolEnvelope, list[bytes]]], size: int
    ) -> None:
        """Make every copy durable, then answer once: 250, or 451 with none of them kept."""
        session = self.session
        assert session is not None
        problem = ""
        started = self.reactor.seconds()
        accepting = trace.now() if trace.TRACE is not None else 0.0
        if len(copies) == 1:
            try:
                await self.spool.accept(*copies[0])
            except OSError as exc:
                problem = str(exc)
        else:
            results = await defer.DeferredList(
                [self.spool.accept(spooled, parts) for spooled, parts in copies],
                consumeErrors=True,
            )
            failures = [value for ok, value in results if not ok]
            if failures:
                problem = failures[0].getErrorMessage()
                kept = [c[0].id for c, (ok, _) in zip(copies, results, strict=True) if ok]
                if kept:  # all or nothing: a 4xx must leave no copy to be delivered
                    try:
                        self.spool.remove_many(kept)
                    except OSError as exc:
                        log.error("could not withdraw {ids}: {e}", ids=kept, e=str(exc))
        if problem:
            log.error(
                "spool failed for {queue_id} in session {session_id}: {error}",
                queue_id=copies[0][0].id,
                session_id=session.session_id,
                error=problem,
            )
            self._reply(451, "4.3.0", "Local error writing the message, try again later")
            return
        session.messages += 1
        session.bytes_received += size
        self._observe_commit(envelope, copies, size, self.reactor.seconds() - started)
        if self.plugins is not None and self.plugins.implementations("mailmax_message_accepted"):
            await self.plugins.notify(
                "mailmax_message_accepted",
                dataphase.sender_scope(session, self.listener.address),
                session=session,
                envelope=envelope,
                size=size,
            )
        for spooled, _ in copies:
            mail_log.info(
                "accepted {queue_id} from <{sender}> to {recipients} size {size} "
                "session {session_id}",
                queue_id=spooled.id,
                sender=envelope.sender,
                recipients=",".join(r.address for r in spooled.recipients if r.state == "pending"),
                size=size,
                session_id=session.session_id,
            )
            for recipient in spooled.recipients:
                if recipient.state == "failed":
                    mail_log.info(
                        "refused {queue_id} for {rcpt}: {error}; returned to the sender",
                        queue_id=spooled.id,
                        rcpt=recipient.address,
                        error=recipient.last_error,
                    )
        ids = " ".join(spooled.id for spooled, _ in copies)
        self._reply(250, "2.0.0", f"Ok: queued as {ids}")
        if trace.TRACE is not None:
            trace.TRACE.record(
                p="smtp", id=ids, dot=self._dot_at, accept=accepting, reply=trace.now()
            )

    def _observe_commit(
        self,
        envelope: Envelope,
        copies: list[tuple[SpoolEnvelope, list[bytes]]],
        size: int,
        seconds: float,
    ) -> None:
        """Count an accepted message, time its commit, publish it (and its text, for the
        ``data`` category)."""
        factory = self.factory
        service = self.listener.service
        activity = factory.activity
        activity.add(service, "messages")
        activity.add(service, "bytes", size)
        for domain in {r.mailbox.rpartition("@")[2] for r in envelope.recipients if r.mailbox}:
            activity.add_domain(domain, "messages")
            activity.add_domain(domain, "bytes", size)
        if factory.commit_seconds is not None:
            factory.commit_seconds.observe(seconds)
        if not factory.events.active:
            return
        ids = " ".join(spooled.id for spooled, _ in copies)
        recipients = ",".join(r.address for r in envelope.recipients)
        self.emit(
            "deliveries", f"accepted {ids} from <{envelope.sender}> to {recipients} size {size}"
        )
        if factory.events.wants(service, "data"):
            text = b"".join(copies[0][1])[:MAX_DATA_EVENT].decode("utf-8", "replace")
            self.emit("data", f"message {ids}:\n{text}")

    def event_domains(self, user: str) -> tuple[str, ...]:
        """The domains of the user, the sender and the recipients of the transaction."""
        domains = set(super().event_domains(user))
        envelope = self.envelope
        if envelope is not None:
            for address in [envelope.sender, *(r.address for r in envelope.recipients)]:
                domain = address.rpartition("@")[2].lower()
                if domain:
                    domains.add(domain)
        return tuple(sorted(domains))

    # ------------------------------------------------------------------ VRFY
    async def vrfy_lookup(self, address: Address) -> None:
        """Answer VRFY for a syntactically fine address (only when VRFY is allowed)."""
        text = str(address)
        lookup: Any = await self.directory.lookup_recipient(text)
        if lookup.status is Lookup.USER:
            self._reply(250, "2.1.5", f"<{lookup.mailbox}>")
        elif lookup.status is Lookup.UNKNOWN_USER:
            self._reply(550, "5.1.1", f"<{text}>: User unknown")
        elif lookup.status is Lookup.DISABLED:
            self._reply(550, "5.2.1", f"<{text}>: Mailbox disabled")
        else:
            self._reply(
                252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"
            )
