"""The MailMax hook contract: every hook a plugin may implement.

Plugins implement hooks with :data:`hookimpl`::

    from mailmax.plugin import hookimpl, reject

    @hookimpl
    def mailmax_mail_from(session, envelope, sender, config):
        if sender.endswith("@spam.example"):
            return reject("Sender refused", 550, "5.7.1")

A hook implementation may accept any subset of the arguments its spec names. Every policy hook
(``connect`` .. ``data``) may return ``None`` (no opinion), a
:class:`~mailmax.core.verdicts.Verdict`, or a Deferred/awaitable that fires with one of those.
MailMax - not pluggy - walks the enabled implementations in the plugin order, awaits each,
and stops at the first decisive verdict.
``config`` is always the plugin's own effective settings for the scope the hook runs in.

``docs/plugins.md`` has one section per hook here; a test keeps the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mailmax.core.clientrights import ClientRights
    from mailmax.core.directory.api import Domain, User
    from mailmax.core.model import Envelope, Recipient, Session
    from mailmax.core.outbound.route import Route
    from mailmax.core.pluginhost.changes import MessageChanges
    from mailmax.core.pluginhost.outcomes import DeliveryDecision
    from mailmax.core.verdicts import Verdict

PROJECT = "mailmax"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class MailMaxHooks:
    """Hook specifications (pluggy's ``add_hookspecs`` reads this class)."""

    # ------------------------------------------------------------------ SMTP phases
    @hookspec
    def mailmax_connect(self, session: Session, config: dict[str, Any]) -> Verdict | None:
        """A client connected; runs before the greeting.

        Scope: system plus the listening address. Return ``reject``/``disconnect`` to refuse the
        connection (the reply replaces the greeting, then the server closes), ``tempfail`` for a
        421-style refusal. A ``reject`` with code 554 keeps the connection open as RFC 5321
        3.1 asks: every later command but QUIT gets ``503``. The session's trust flags come from
        ``mailmax_client_rights``; a plugin may change them here.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_client_rights(
        self, session: Session, listener: str, config: dict[str, Any]
    ) -> ClientRights | None:
        """What the client of ``session`` may do, asked once per connection (SMTP, POP3, IMAP)
        on the listening address ``listener``, before the per-IP connection limits count it.

        Scope: system plus the listening address. Return a
        :class:`~mailmax.core.clientrights.ClientRights` (``mailmax.plugin.ClientRights``) or
        ``None``. Synchronous, and called for every connection: answer from memory. The rights
        decide whether the client is refused (``banned``: SMTP greets it with ``554`` and
        answers ``503`` until QUIT, POP3 and IMAP close at once), whether the connection limits
        count it, and set the session's trust flags (``trusted``, ``relay_allowed``,
        ``auth_exempt``, ``local_only``, ``dnsbl_exempt``). Without an answer, the rights come
        from ``[smtp] trusted_networks`` and ``[connections] exempt_networks``.
        Several plugins: the first answer wins.
        """

    @hookspec
    def mailmax_helo(self, session: Session, helo: str, config: dict[str, Any]) -> Verdict | None:
        """The client said HELO or EHLO with ``helo`` as its name.

        Scope: system plus the listening address. A decisive verdict other than ACCEPT answers the
        HELO/EHLO command; ACCEPT or no opinion sends the normal greeting.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_auth(
        self, session: Session, username: str, config: dict[str, Any]
    ) -> Verdict | None:
        """A client proved its credentials for ``username`` (canonical ``user@domain``).

        Scope: system, the listening address, and the domain and user of ``username`` (in
        SMTP, POP3 and IMAP alike). Runs after the password check succeeded and before the
        success reply. A REJECT or TEMPFAIL
        turns the login into a failure with that reply; the session stays unauthenticated.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_mail_from(
        self, session: Session, envelope: Envelope, sender: str, config: dict[str, Any]
    ) -> Verdict | None:
        """MAIL FROM with reverse path ``sender`` (``""``: null sender) passed the core checks.

        Scope: system plus the listening address, plus the sender's domain and user when the
        session is authenticated as a local user (an unauthenticated sender's address proves
        nothing, so it never selects a scope). Policies about the sender that depend on the
        recipient's domain belong in ``mailmax_rcpt_to``, which runs in that recipient's
        scope. ``envelope.params`` holds the ESMTP parameters.
        A decisive verdict other than ACCEPT answers the command and no transaction starts.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_rcpt_to(
        self, session: Session, envelope: Envelope, recipient: Recipient, config: dict[str, Any]
    ) -> Verdict | None:
        """RCPT TO ``recipient`` passed the core checks (local user exists, or relaying is allowed).

        Scope: the recipient's (user over domain over listening address over system); an
        alias or catch-all address has its domain's scope. A decisive verdict other than
        ACCEPT refuses this recipient only; ACCEPT or no opinion adds it to ``envelope``.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_rcpt_refused(
        self,
        session: Session,
        envelope: Envelope,
        address: str,
        code: int,
        status: str,
        config: dict[str, Any],
    ) -> Verdict | None:
        """The server refused RCPT TO ``address`` with ``code`` and ``status`` (an unknown or
        disabled user, relaying denied); runs before the refusal is sent.

        Scope: system plus the listening address. Nothing is refused here that was not refused
        already, and ``452`` replies (too many recipients, another transaction) never come
        here. The reply waits for the answer, so a plugin may hold it (a Deferred that fires
        later: tarpitting); ``disconnect()`` sends its own reply instead and closes the
        session; anything else sends the refusal.
        Several plugins: run in plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_data(
        self,
        session: Session,
        envelope: Envelope,
        message: bytes,
        changes: MessageChanges,
        config: dict[str, Any],
    ) -> Verdict | None:
        """The whole message (``message``, as received, before our Received header) has arrived.

        Scope: each recipient's. Recipients whose data-phase plugins and settings are the same
        form a group; the hook runs once per group, before the message is spooled, and
        ``envelope.recipients`` holds that group's recipients only. The server then gives one
        reply: when every group's verdict refuses, that refusal (a TEMPFAIL wins over a REJECT,
        so no recipient loses mail its plugins only delayed); otherwise 250, and a copy a
        group refused is returned to the sender (this happens only on sessions of mail
        clients: on an unauthenticated port-25 session a RCPT whose data-phase plugins differ
        from the first recipient's gets ``452 4.5.3`` and comes in the next transaction).

        ``changes`` (a :class:`~mailmax.core.pluginhost.changes.MessageChanges`) records
        changes to the message: ``add_header``, ``remove_header``, ``replace_part`` (a MIME
        part by its number, ``"1"``, ``"2.1"``) and ``replace_message``. They are made once,
        after the group's last plugin, and the changed message must still meet the size and
        hop limits (else 552 5.3.4 / 554 5.4.6 for that group). Groups whose changes differ get
        their own spooled copy; all are durable before the one 250. ``message`` is always the
        message as received. Several plugins: run in plugin order, the first decisive verdict
        wins; the changes of every plugin that ran are made.
        """

    @hookspec
    def mailmax_message_accepted(
        self, session: Session, envelope: Envelope, size: int, config: dict[str, Any]
    ) -> None:
        """A message of ``size`` bytes (as received) from ``envelope.sender`` to
        ``envelope.recipients`` is durable in the queue; its ``250`` reply follows.

        Scope: as ``mailmax_mail_from`` (system plus the listening address, plus the sender's
        domain and user when the session is authenticated as a local user). For counting what
        was sent (sending limits, statistics): it runs before the reply is sent, so the next
        MAIL FROM of the session already sees the count, and the reply waits for a Deferred
        it returns. What it returns is ignored and a plugin that fails is logged: the message
        stays accepted whatever happens here. Several plugins: each runs, in plugin order.
        """

    # ------------------------------------------------------------------ delivery
    @hookspec(firstresult=True)
    def mailmax_resolve_recipient(self, address: str, config: dict[str, Any]) -> list[str] | None:
        """Map a local address that is not a mailbox (an alias) to mailbox addresses.

        Runs when RCPT names a local domain address and again when the queue delivers it.
        Return a list of addresses (each resolved again, at most 10 levels deep) or ``None`` for
        "not mine". Synchronous. Several plugins: the first non-``None`` answer wins.
        """

    @hookspec
    def mailmax_expand_recipient(
        self, mailbox: str, envelope: Envelope, config: dict[str, Any], user: User | None
    ) -> list[str] | None:
        """A message is about to be delivered to local ``mailbox``: name extra recipients.

        Scope: the mailbox's own. ``user`` is the mailbox's directory record (None when the
        directory has none), with what an LDAP directory holds for it (``forward_to``). Return
        addresses that should also get this message (forwards, monitor copies). Include
        ``mailbox`` itself to keep the local copy; return ``None`` for no change. The final list
        is de-duplicated, so forwarding between local users cannot loop. Synchronous. Several
        plugins: their lists are merged in plugin order.
        """

    @hookspec
    def mailmax_deliver(
        self,
        mailbox: str,
        envelope: Envelope,
        message_path: str,
        config: dict[str, Any],
        user: User | None,
    ) -> DeliveryDecision | Verdict | str | None:
        """Decide where ``mailbox``'s copy of the message goes.

        Scope: the mailbox's own (a copy that an alias, a forward or a catch-all sent to a
        mailbox of another domain gets that mailbox's scope); ``user`` is the mailbox's
        directory record, as for ``mailmax_expand_recipient``. Return a folder name
        (``"INBOX"``, ``"Junk"``, ...) or ``deliver_to(folder, reason)`` to store it there,
        ``quarantine(reason, mailbox=..., folder=...)`` to store it in a quarantine folder
        (the recipient's own, or another local mailbox's) with an ``X-MailMax-Quarantine``
        header naming the plugin and the reason, ``redirect(address, ...)`` to send it to
        other addresses instead (each gets its own delivery policy), ``discard(reason)`` or
        ``accept()`` to store nothing, ``tempfail()`` to retry later, ``reject()`` to bounce
        it, or ``None`` for no opinion (the next plugin decides; with none, the INBOX). The
        mail log line of the delivery names the plugin that decided and its reason. May return
        a Deferred. Several plugins: run in plugin order, the first non-``None`` answer wins.

        ``message_path`` names the queued message file: read it, never change it (it may
        become the stored message itself, hard-linked into the Maildir). A message queued for
        this one mailbox already begins with its ``Return-Path`` and ``Delivered-To`` lines;
        ``host.submit`` leaves those out of the copies it queues.
        """

    # ------------------------------------------------------------------ outbound
    @hookspec
    def mailmax_route(
        self,
        domain: str,
        envelope: Envelope,
        domain_record: Domain | None,
        config: dict[str, Any],
    ) -> Route | None:
        """Choose how the mail for the remote domain ``domain`` is delivered.

        Runs in the queue runner before every delivery attempt to the recipients at ``domain``
        (``envelope.recipients`` holds only those; ``envelope.size_hint`` is the message size in
        bytes). ``domain_record`` is the directory's record when ``domain`` is one of ours whose
        mail is passed on (relay-to-host, backup, ETRN), else ``None``. Scope: ``domain`` when it
        is one of ours; otherwise the sender's domain (the authenticated user's, else the
        envelope sender's) when that is one of ours, so a domain can have its own smart host;
        else the system. Return a ``Route`` from :mod:`mailmax.plugin` (its delivery
        engines in the order to try, whether to hold the mail for ETRN, ...) or ``None`` for
        no opinion. May return a Deferred. Several plugins: the first non-``None`` answer wins;
        with none, the mail goes straight to the domain's MX hosts.
        """

    @hookspec
    def mailmax_transit(
        self, envelope: Envelope, domain: str, message_path: str, config: dict[str, Any]
    ) -> Verdict | None:
        """Mail for ``domain`` passes through this server: its route says *transit*.

        Scope: ``domain``. Routes of relay-to-host, backup MX and ETRN domains are transit
        routes. Runs once per message and domain, before the first attempt to send the mail or
        to hold it for ETRN; ``envelope.recipients`` holds the recipients at ``domain`` and
        ``message_path`` names the queued message file (read it, never change it; it may begin
        with the ``Return-Path`` and ``Delivered-To`` lines of a local delivery). Return
        ``reject()`` to bounce the mail for these recipients, ``tempfail()`` to try again
        later, ``accept()`` to treat it as handled and send nothing (e.g. a quarantined
        virus), or ``None`` for no opinion. May return a Deferred. Several plugins: run in
        plugin order, the first decisive verdict wins.
        """

    @hookspec
    def mailmax_etrn(
        self,
        session: Session,
        domain: str,
        domain_record: Domain | None,
        config: dict[str, Any],
    ) -> Verdict | None:
        """A client asked with ``ETRN domain`` (RFC 1985) to receive the mail held for ``domain``.

        Scope: ``domain`` (for ``ETRN @domain``, each held domain under it in turn) and the
        listening address. ``domain_record`` is the directory's record of ``domain`` (``None``
        when it is not one of ours). Return ``accept()`` to allow it (the held mail for the
        domain is sent now), ``reject()`` to refuse (the client gets 459 with the verdict's
        text), or ``None`` for no opinion. Without an accepting plugin the request is refused
        and nothing changes. ETRN is offered in the EHLO reply only where a plugin implementing
        this hook is enabled. May return a Deferred. Several plugins: run in plugin order, the
        first decisive verdict wins.
        """

    @hookspec
    def mailmax_credential_checkers(self, config: dict[str, Any]) -> list[Any] | None:
        """Give ``twisted.cred`` credential checkers for SMTP AUTH, POP3 and IMAP log-ins.

        Scope: system. Called at every log-in with the plugin set of the session. Return
        checkers (objects providing ``twisted.cred.checkers.ICredentialsChecker``) or ``None``.
        Log-ins come as ``IUsernamePassword`` (a password) or ``IUsernameHashedPassword``
        (APOP, CRAM-MD5) credentials with ``username`` and a ``default_domain`` attribute; a
        checker fires with the address of a user of the directory (enabled), or fails with
        ``UnauthorizedLogin`` to pass the log-in on; any other failure ends the log-in as a
        temporary error. ``requestAvatarId`` may return a Deferred. Several plugins: their
        checkers are asked in plugin order, before the directory's own.
        """

    # ------------------------------------------------------------------ lifecycle
    @hookspec
    def mailmax_configure(self, config: dict[str, Any]) -> None:
        """The plugin set was (re)loaded with ``config`` as the plugin's system settings.

        Called once per load and reload, before any session uses the new plugin set. Raise
        ``ValueError`` with a clear message to refuse the configuration (the reload then fails and
        nothing changes).
        """
