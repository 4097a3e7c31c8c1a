"""Remote delivery of one message's due recipients.

For each destination domain the ``mailmax_route`` hook says how its mail goes (direct MX
delivery by default). Recipients whose routes are equal travel together: one SMTP transaction
per destination for all its recipients (up to ``max_recipients_per_transaction``), with a
result per recipient. Within an attempt a route's delivery engines are tried in order, and
within an engine the hosts in MX order; a host that cannot be reached or refuses the session
passes the recipients to the next one.

Mail exchangers that are this server (``[server] hostname``, ``[queue] local_names``,
``[queue] local_addresses``) and every MX less preferred than it are never used (RFC 5321
5.1); if this server is the best MX of a domain, its mail would loop and bounces at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, ssl
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core import model
from mailmax.core.config import Settings
from mailmax.core.hooks import SYSTEM, PluginSet, Scope
from mailmax.core.outbound.client import Reply, SessionError, SMTPClient, Transaction
from mailmax.core.outbound.dns import DNSError, DNSPermanentError, Resolver, ip_literal
from mailmax.core.outbound.pool import Holding, SessionPool
from mailmax.core.outbound.route import Engine, Route, direct, notes_parameter
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.verdicts import Action

log = Logger(namespace="mailmax.outbound")

#: Most addresses (over all MX hosts) tried for one engine in one attempt.
MAX_ADDRESSES = 10


@dataclass
class RemoteOutcome:
    """What became of one remote recipient in one delivery attempt.

    ``state``: ``delivered``, ``deferred`` (try again later), ``failed`` (bounce), ``held``
    (keep for ETRN) or ``discarded`` (a transit plugin handled it). ``diagnostic`` is the
    SMTP-style reply that says why; ``remote`` the host that answered.
    """

    state: str
    diagnostic: str = ""
    remote: str = ""
    route: Route = field(default_factory=direct)


@dataclass(frozen=True, slots=True)
class _Host:
    name: str
    address: str
    port: int


def domain_of(address: str) -> str:
    """The domain of ``address`` in lower case (an address literal keeps its brackets)."""
    return address.rpartition("@")[2].lower()


def _hook_envelope(envelope: SpoolEnvelope, recipients: Sequence[SpoolRecipient]) -> model.Envelope:
    return model.Envelope(
        sender=envelope.sender,
        params=dict(envelope.params),
        recipients=[
            model.Recipient(r.address, r.kind, r.mailbox, dict(r.params)) for r in recipients
        ],
        size_hint=envelope.size,
        notes=dict(envelope.notes),
    )


class OutboundDelivery:
    """Sends messages to other servers; one instance per queue runner."""

    def __init__(
        self,
        *,
        settings: Settings,
        reactor: Any,
        domain_record: Callable[[str], defer.Deferred[Any]] | None = None,
        resolver: Resolver | None = None,
        node_route: Callable[[str], defer.Deferred[Route | str | None]] | None = None,
    ) -> None:
        queue = settings.queue
        self.reactor = reactor
        self.resolver = resolver or Resolver(
            reactor=reactor,
            servers=queue.dns_server_addresses,
            timeout=queue.dns_timeout,
            ip_versions=queue.ip_versions,
        )
        self.pool = SessionPool(
            reactor=reactor,
            max_sessions=queue.max_sessions,
            max_retry_sessions=queue.max_retry_sessions,
            max_per_destination=queue.max_per_destination,
            reuse_seconds=queue.reuse_seconds,
        )
        self.domain_record = domain_record
        #: Clustered domains: a recipient's route to its home node, a 4xx reply while it must
        #: wait, or None (routed by its domain as usual).
        self.node_route = node_route
        self._tls_cache: dict[tuple[str, str], Any] = {}
        self._records: dict[str, tuple[float, Any]] = {}
        #: Look-ups of a domain's record under way: the callers waiting for each.
        self._record_waiters: dict[str, list[defer.Deferred[Any]]] = {}
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """Use ``settings`` for the deliveries from now on (at start and on a reload); the DNS
        servers asked stay those of the start."""
        queue = settings.queue
        self.settings = settings
        self.queue = queue
        self.helo_name = queue.helo_name or settings.server.hostname
        self.resolver.timeout = queue.dns_timeout
        self.resolver.ip_versions = queue.ip_versions
        self.pool.max_sessions = queue.max_sessions
        self.pool.max_retry_sessions = queue.max_retry_sessions
        self.pool.max_per_destination = queue.max_per_destination
        self.pool.reuse_seconds = queue.reuse_seconds
        self.local_names = {
            name.rstrip(".").lower() for name in [settings.server.hostname, *queue.local_names]
        }
        self.local_addresses = set(queue.local_addresses)
        self._tls_cache.clear()

    def close(self) -> None:
        """Close the idle connections kept for reuse."""
        self.pool.close()

    # ------------------------------------------------------------------ one message
    async def deliver(
        self,
        plugins: PluginSet,
        envelope: SpoolEnvelope,
        message_path: Path,
        indexes: Sequence[int],
        *,
        released: frozenset[str] = frozenset(),
        content: bytes | None = None,
    ) -> dict[int, RemoteOutcome]:
        """Deliver ``envelope.recipients[i]`` for each ``i`` in ``indexes``; never raises.

        ``released`` names domains whose held mail is being sent because of ETRN: their
        routes deliver instead of holding. ``content`` is the message when the caller has
        read it already (else it is streamed from ``message_path``).
        """
        by_domain: dict[str, list[int]] = {}
        results: dict[int, RemoteOutcome] = {}
        groups: dict[tuple[Route, str], list[int]] = {}
        for index in indexes:
            address = envelope.recipients[index].address
            node = await self._node_route(address)
            if isinstance(node, RemoteOutcome):
                results[index] = node
            elif node is not None:
                groups.setdefault((node, ""), []).append(index)
            else:
                by_domain.setdefault(domain_of(address), []).append(index)
        for domain, members in by_domain.items():
            recipients = [envelope.recipients[i] for i in members]
            route = await self._route(plugins, domain, envelope, recipients)
            if isinstance(route, RemoteOutcome):
                results.update((i, route) for i in members)
                continue
            if route.transit and any(r.attempts == 0 for r in recipients):
                verdict = await self._transit(plugins, domain, envelope, recipients, message_path)
                if verdict is not None:
                    results.update((i, replace(verdict, route=route)) for i in members)
                    continue
            if route.hold and domain not in released:
                held = RemoteOutcome("held", "held for ETRN", route=route)
                results.update((i, held) for i in members)
                continue
            key = domain if any(e.direct for e in route.engines) else ""
            groups.setdefault((route, key), []).extend(members)
        work = []
        size = self.queue.max_recipients_per_transaction
        for (route, domain), members in groups.items():
            for start in range(0, len(members), size):
                part = members[start : start + size]
                work.append(self._group(route, domain, envelope, message_path, part, content))
        if len(work) == 1:  # most messages: one destination, nothing to wait for together
            results.update(await work[0])
            return results
        for outcome in await defer.gatherResults([defer.ensureDeferred(w) for w in work]):
            results.update(outcome)
        return results

    async def _route(
        self,
        plugins: PluginSet,
        domain: str,
        envelope: SpoolEnvelope,
        recipients: Sequence[SpoolRecipient],
    ) -> Route | RemoteOutcome:
        try:
            record = await self._record(domain)
            scope = Scope(domain=domain)
            if record is None:
                sender = envelope.auth_user or envelope.sender
                home = domain_of(sender) if "@" in sender else ""
                scope = Scope(domain=home) if home and await self._record(home) else SYSTEM
            route = await plugins.first_async(
                "mailmax_route",
                scope,
                domain=domain,
                envelope=_hook_envelope(envelope, recipients),
                domain_record=record,
            )
        except Exception:
            log.failure("routing {domain} failed", domain=domain)
            return RemoteOutcome("deferred", "451 4.3.0 Local error while routing the message")
        if route is None:
            return direct()
        if not isinstance(route, Route):
            log.error("mailmax_route returned {value!r}; expected a Route", value=route)
            return RemoteOutcome("deferred", "451 4.3.0 Local error while routing the message")
        return route

    async def _node_route(self, address: str) -> Route | RemoteOutcome | None:
        """The home node's route of a clustered mailbox (see :attr:`node_route`)."""
        if self.node_route is None:
            return None
        try:
            found = await self.node_route(address)
        except Exception:
            log.failure("finding the home node of {address} failed", address=address)
            return RemoteOutcome("deferred", "451 4.3.0 Local error while routing the message")
        if isinstance(found, str):
            return RemoteOutcome("deferred", found)
        return found

    async def _record(self, domain: str) -> Any:
        """The directory's record of ``domain`` when it is one of ours (briefly cached)."""
        if self.domain_record is None or ip_literal(domain) is not None:
            return None
        now = time.monotonic()
        hit = self._records.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        waiters = self._record_waiters.get(domain)
        if waiters is not None:  # one look-up per domain at a time, however many messages
            waiter: defer.Deferred[Any] = defer.Deferred()
            waiters.append(waiter)
            return await waiter
        waiters = self._record_waiters[domain] = []
        try:
            record = await self.domain_record(domain)
        except Exception:
            failure = Failure()
            del self._record_waiters[domain]
            for waiter in waiters:
                waiter.errback(failure)
            raise
        if len(self._records) > 10000:
            self._records.clear()
        self._records[domain] = (now + self.settings.server.directory_cache_seconds, record)
        del self._record_waiters[domain]
        for waiter in waiters:
            waiter.callback(record)
        return record

    async def _transit(
        self,
        plugins: PluginSet,
        domain: str,
        envelope: SpoolEnvelope,
        recipients: Sequence[SpoolRecipient],
        message_path: Path,
    ) -> RemoteOutcome | None:
        verdict = await plugins.run_policy(
            "mailmax_transit",
            Scope(domain=domain),
            envelope=_hook_envelope(envelope, recipients),
            domain=domain,
            message_path=str(message_path),
        )
        text = f"{verdict.code} {verdict.status} {verdict.text}"
        if verdict.plugin:
            text += f" ({verdict.plugin})"
        if verdict.action is Action.CONTINUE:
            return None
        if verdict.action is Action.ACCEPT:
            return RemoteOutcome("discarded", text)
        if verdict.action is Action.REJECT:
            return RemoteOutcome("failed", text)
        return RemoteOutcome("deferred", text)

    # ------------------------------------------------------------------ one destination
    async def _group(
        self,
        route: Route,
        domain: str,
        envelope: SpoolEnvelope,
        message_path: Path,
        members: list[int],
        content: bytes | None = None,
    ) -> dict[int, RemoteOutcome]:
        """Try the route's engines in order for the recipients not yet delivered."""
        retry = any(envelope.recipients[i].attempts > 0 for i in members)
        history: dict[int, list[RemoteOutcome]] = {i: [] for i in members}
        pending = list(members)
        for engine in route.engines:
            try:
                outcome = await self._engine(
                    engine, route, domain, envelope, (message_path, content), pending, retry
                )
            except Exception:
                log.failure("queue {queue_id}: delivery failed", queue_id=envelope.id)
                problem = RemoteOutcome("deferred", "451 4.3.0 Local error in delivery", "", route)
                outcome = {i: problem for i in pending}
            for index, result in outcome.items():
                history[index].append(result)
            pending = [i for i in pending if outcome[i].state != "delivered"]
            if not pending:
                break
        results: dict[int, RemoteOutcome] = {}
        for index, tries in history.items():
            if tries[-1].state == "delivered":
                results[index] = tries[-1]
                continue
            temporary = [t for t in tries if t.state == "deferred"]
            results[index] = temporary[-1] if temporary else tries[-1]
        return results

    async def _engine(
        self,
        engine: Engine,
        route: Route,
        domain: str,
        envelope: SpoolEnvelope,
        message: tuple[Path, bytes | None],
        members: list[int],
        retry: bool,
    ) -> dict[int, RemoteOutcome]:
        def everyone(state: str, diagnostic: str, remote: str = "") -> dict[int, RemoteOutcome]:
            return {i: RemoteOutcome(state, diagnostic, remote, route) for i in members}

        try:
            hosts = await self._hosts(engine, route, domain)
        except DNSError as exc:
            state = "failed" if isinstance(exc, DNSPermanentError) else "deferred"
            return everyone(state, exc.diagnostic)
        addresses = [envelope.recipients[i].address for i in members]
        destination = (domain if engine.direct else "", engine)
        policy = engine.tls or self.queue.tls
        profile = (policy, engine.username, engine.password)
        # a verified connection is only as good as the name its certificate was checked for
        endpoints = [
            (host.address, host.port, profile, host.name if policy == "verify" else "")
            for host in hosts
        ]
        held = Holding(self.pool, await self.pool.lease(destination, retry, endpoints))
        client: SMTPClient | None = None
        errors: list[str] = []
        try:
            if held.lease.client is not None:
                client = held.lease.client
                held.lease.client = None
                try:
                    done = await self._send(client, envelope, addresses, message, route, held)
                    return self._replies(done, members, addresses, route, client.host)
                except SessionError:
                    client.drop()
                    client = None
                    await held.regain()
            for host, endpoint in zip(hosts, endpoints, strict=True):
                held.lease.endpoint = endpoint
                try:
                    client = await self._open(host, engine)
                except SessionError as exc:
                    errors.append(exc.diagnostic)
                    log.info(
                        "queue {queue_id}: {host}: {error}",
                        queue_id=envelope.id,
                        host=_describe(host),
                        error=exc.diagnostic,
                    )
                    continue
                try:
                    done = await self._send(client, envelope, addresses, message, route, held)
                except SessionError as exc:
                    client.drop()
                    client = None
                    await held.regain()
                    if not exc.temporary:
                        return everyone("failed", exc.diagnostic, host.name)
                    errors.append(exc.diagnostic)
                    continue
                return self._replies(done, members, addresses, route, _describe(host))
            if not hosts:
                return everyone("deferred", "451 4.4.4 No mail host to try")
            return everyone("deferred", errors[-1] if errors else "451 4.4.1 No answer")
        finally:
            if not held.handed:  # else the connection is the next delivery's
                if client is not None and not client.idle_ok():
                    client.drop()
                    client = None
                held.release(client)

    def _replies(
        self,
        done: Transaction,
        members: list[int],
        addresses: list[str],
        route: Route,
        remote: str,
    ) -> dict[int, RemoteOutcome]:
        out = {}
        for index, address in zip(members, addresses, strict=True):
            reply = done.replies[address]
            state = "delivered" if reply.positive else "failed" if reply.permanent else "deferred"
            out[index] = RemoteOutcome(state, str(reply), remote, route)
        return out

    async def _send(
        self,
        client: SMTPClient,
        envelope: SpoolEnvelope,
        addresses: list[str],
        message: tuple[Path, bytes | None],
        route: Route,
        held: Holding,
    ) -> Transaction:
        extra = notes_parameter(envelope.notes) if route.pass_notes else ""
        sent = partial(held.sent, client)
        done = await self._transaction(client, envelope, addresses, message, extra, sent)
        # 452 to some RCPTs while others were taken: send those again at once, in the next
        # transaction on this connection (each round takes at least one, so this ends).
        while done.send_again and done.reusable:
            log.info(
                "queue {queue_id}: {host} asked for {rcpts} in a new transaction",
                queue_id=envelope.id,
                host=client.host,
                rcpts=",".join(done.send_again),
            )
            try:
                again = await self._transaction(
                    client, envelope, done.send_again, message, extra, sent
                )
            except SessionError as exc:  # the first ones are delivered: only these wait
                reply = Reply(451, (f"4.4.2 {exc.diagnostic}",))
                done.replies.update(dict.fromkeys(done.send_again, reply))
                done.send_again, done.reusable = [], False
                break
            done.replies.update(again.replies)
            done.send_again, done.reusable = again.send_again, again.reusable
        if not done.reusable:
            client.drop()
        return done

    @staticmethod
    async def _transaction(
        client: SMTPClient,
        envelope: SpoolEnvelope,
        addresses: list[str],
        message: tuple[Path, bytes | None],
        extra: str = "",
        on_sent: Callable[[], None] | None = None,
    ) -> Transaction:
        return await client.transaction(
            envelope.sender,
            addresses,
            message[0],
            content=message[1],
            skip=envelope.trace_bytes,
            size=envelope.size,
            eight_bit=envelope.params.get("BODY", "").upper() == "8BITMIME",
            mail_params=extra,
            on_sent=on_sent,
        )

    # ------------------------------------------------------------------ hosts
    async def _hosts(self, engine: Engine, route: Route, domain: str) -> list[_Host]:
        """The addresses to try for ``engine``, in order (DNSError when there are none)."""
        if not engine.direct:
            port = engine.port or 25
            found = await self.resolver.addresses(engine.host)
            if not found:
                raise DNSPermanentError(f"550 5.4.4 Host {engine.host} has no address")
            return [_Host(engine.host, a, port) for a in found][:MAX_ADDRESSES]
        port = engine.port or self.queue.remote_port
        literal = ip_literal(domain)
        if literal is not None:
            return [_Host(literal, literal, port)]
        mx_hosts = await self.resolver.mx(domain)
        ours = [mx.preference for mx in mx_hosts if mx.name in self.local_names]
        limit = min(ours) if ours else None
        if engine.below_preference is not None:
            limit = min(engine.below_preference, limit if limit is not None else 1 << 30)
        usable = [mx for mx in mx_hosts if limit is None or mx.preference < limit]
        if not usable:
            if engine.below_preference is not None:
                raise DNSError(
                    f"451 4.4.4 No MX host of {domain} is preferred over this backup server"
                )
            raise DNSPermanentError(
                f"554 5.4.6 Mail for {domain} loops back to myself (this server is its best MX)"
            )
        hosts: list[_Host] = []
        last_error: DNSError | None = None
        for mx in usable:
            try:
                found = await self.resolver.addresses(mx.name)
            except DNSError as exc:
                last_error = exc
                continue
            for address in found:
                if address in self.local_addresses:
                    return hosts or self._loop(domain, engine)
                hosts.append(_Host(mx.name, address, port))
        if not hosts and last_error is not None:
            raise last_error
        if not hosts:
            raise DNSError(f"451 4.4.4 No MX host of {domain} has an address")
        return hosts[:MAX_ADDRESSES]

    @staticmethod
    def _loop(domain: str, engine: Engine) -> list[_Host]:
        if engine.below_preference is not None:
            raise DNSError(f"451 4.4.4 No MX host of {domain} is preferred over this backup server")
        raise DNSPermanentError(
            f"554 5.4.6 Mail for {domain} loops back to myself (this server is its best MX)"
        )

    # ------------------------------------------------------------------ sessions
    async def _open(self, host: _Host, engine: Engine) -> SMTPClient:
        """Connect to ``host``, say EHLO, start TLS and log in as ``engine`` says."""
        client = SMTPClient(
            reactor=self.reactor, timeout=self.queue.smtp_timeout, host=_describe(host)
        )
        factory = (
            endpoints.TCP6ClientEndpoint if ":" in host.address else endpoints.TCP4ClientEndpoint
        )
        endpoint = factory(
            self.reactor, host.address, host.port, timeout=self.queue.connect_timeout
        )
        try:
            await endpoints.connectProtocol(endpoint, client)
        except Exception as exc:
            raise SessionError(f"451 4.4.1 Cannot connect to {_describe(host)}: {exc}") from None
        try:
            await client.start(self.helo_name)
            policy = engine.tls or self.queue.tls
            if policy != "none":
                if client.offers("STARTTLS"):
                    await client.starttls(self._tls_options(policy, host.name), self.helo_name)
                elif policy in ("encrypt", "verify"):
                    raise SessionError(
                        f"451 4.7.10 {_describe(host)} does not offer STARTTLS, which this "
                        "destination requires"
                    )
            if engine.username:
                await client.auth(engine.username, engine.password)
        except BaseException:
            client.abort()
            raise
        return client

    def _tls_options(self, policy: str, hostname: str) -> Any:
        key = (policy, hostname if policy == "verify" else "")
        cached = self._tls_cache.get(key)
        if cached is not None:
            return cached
        options: Any
        if policy == "verify":
            options = ssl.optionsForClientTLS(hostname, trustRoot=self._trust_root())
        else:
            options = ssl.CertificateOptions(raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
        if len(self._tls_cache) > 1000:
            self._tls_cache.clear()
        self._tls_cache[key] = options
        return options

    def _trust_root(self) -> Any:
        ca_file = self.queue.tls_ca_file
        if not ca_file:
            return ssl.platformTrust()
        data = self.settings.path(ca_file).read_bytes()
        marker = b"-----END CERTIFICATE-----"
        blocks = [part + marker for part in data.split(marker) if b"BEGIN CERTIFICATE" in part]
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])


def _describe(host: _Host) -> str:
    if host.name == host.address:
        return f"[{host.address}]:{host.port}"
    return f"{host.name}[{host.address}]:{host.port}"
