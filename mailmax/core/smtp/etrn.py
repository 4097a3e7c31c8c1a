"""The SMTP command ETRN (RFC 1985): a client asks for the mail held for its domain.

``ETRN example.com`` asks for the mail held for one domain, ``ETRN @example.com`` for it and
every domain under it. Who may ask for what is the plugins' decision (``mailmax_etrn``, the
``etrn`` plugin checks the client's address); without an accepting plugin the request is
refused and nothing changes. An allowed request hands the domains to the queue runner, which
sends their held mail at once. ETRN is offered in EHLO only where a plugin implementing the
hook is enabled; elsewhere it is an unknown command.

Replies (RFC 1985 section 5 with enhanced status codes): 250 queuing started (``@`` form),
251 no messages waiting, 253 n messages started, 458 unable to queue (``#queue`` names, no
queue runner), 459 node not allowed, 500/501 syntax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from mailmax.core.hooks import Scope
from mailmax.core.smtp.commands import SMTPRefusal, SMTPReplyError, normalize_domain
from mailmax.core.verdicts import Action

if TYPE_CHECKING:
    from mailmax.core.smtp.server import SMTPServer

log = Logger(namespace="mailmax.smtp")

HOOK = "mailmax_etrn"


def offered(server: SMTPServer) -> bool:
    """True when a plugin implementing ``mailmax_etrn`` is enabled on this listener."""
    plugins = server.plugins
    if plugins is None:
        return False
    scope = Scope(listener=server.listener.address)
    return any(plugins.resolve(plugin, scope)[0] for plugin, _ in plugins.implementations(HOOK))


def parse(arg: str) -> tuple[str, bool]:
    """The node of an ETRN argument and whether its subdomains are meant (``@`` form)."""
    text = arg.strip()
    if not text or " " in text:
        raise SMTPReplyError(501, "5.5.4", "Syntax: ETRN [@]domain")
    if text.startswith("#"):
        raise SMTPRefusal(458, "4.5.0", f"Unable to queue messages for node {text}")
    subdomains = text.startswith("@")
    try:
        return normalize_domain(text[1:] if subdomains else text), subdomains
    except ValueError:
        raise SMTPReplyError(501, "5.5.4", "Syntax: ETRN [@]domain") from None


async def handle(server: SMTPServer, arg: str) -> None:
    """Answer one ETRN command."""
    from mailmax.core.queue.runner import runner_for

    if not offered(server):
        raise SMTPReplyError(500, "5.5.2", "Command unrecognized")
    node, subdomains = parse(arg)
    shown = f"@{node}" if subdomains else node
    runner = runner_for(server.spool)
    if runner is None:
        raise SMTPRefusal(458, "4.3.0", f"Unable to queue messages for node {shown}")
    candidates = [node]
    if subdomains:
        candidates += [d for d in runner.held_domains(node, True) if d != node]
    allowed, refusal = [], None
    assert server.plugins is not None and server.session is not None
    for domain in candidates:
        record = await server.directory.get_domain(domain)
        verdict = await server.plugins.run_policy(
            HOOK,
            Scope(domain=domain, listener=server.listener.address),
            session=server.session,
            domain=domain,
            domain_record=record,
        )
        if verdict.action is Action.ACCEPT:
            allowed.append(domain)
        elif verdict.decisive and refusal is None:
            refusal = verdict
    session_id = server.session.session_id
    if not allowed:
        why = refusal.text if refusal is not None else "no ETRN service for it here"
        log.info(
            "ETRN {node} refused in session {session_id} from {peer}: {why}",
            node=shown,
            session_id=session_id,
            peer=server.session.peer_ip,
            why=why,
        )
        raise SMTPRefusal(459, "4.7.1", f"Node {shown} not allowed: {why}")
    count = await runner.release(allowed)
    log.info(
        "ETRN {node} in session {session_id} from {peer}: {count} held message(s) for {domains}",
        node=shown,
        session_id=session_id,
        peer=server.session.peer_ip,
        count=count,
        domains=allowed,
    )
    if subdomains:
        server._reply(250, "2.0.0", f"OK, queuing for node {shown} started")
    elif count == 0:
        server._reply(251, "2.0.0", f"OK, no messages waiting for node {shown}")
    else:
        server._reply(253, "2.0.0", f"OK, {count} pending messages for node {shown} started")
