"""What a plugin may use of the running server: the ``host`` argument of every hook.

One :class:`PluginHost` belongs to one service (never a module global). Plugins use it for:

- ``host.directory``: the non-blocking, briefly cached directory (Deferreds), for hooks that
  may return a Deferred;
- ``host.lookup(address)`` and ``host.domain(name)``: look-ups cached for ``cache_seconds``,
  for synchronous hooks (``mailmax_resolve_recipient``, ``mailmax_expand_recipient``); only a
  name's first look-up (or one after a quiet spell) blocks, as a name in use is read again in
  the background;
- ``host.submit(...)``: queue a new message (a copy of a queued one) with its own sender;
- ``host.record_event(kind, ...)``: a durable record (one JSON line in
  ``<data>/events/<kind>.jsonl``) that other features read later (:meth:`events`);
- ``host.secret(name)``: a random per-installation key kept in ``<data>/secrets/``;
- the services of :class:`~mailmax.core.pluginhost.services.HostServices`: each plugin's
  key-value store and tables, DNS, sending notices, metrics and the clock.
"""

from __future__ import annotations

import json
import os
import re
import secrets as secrets_mod
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python import threadable

from mailmax.core.directory.api import Domain, RecipientLookup
from mailmax.core.pluginhost.services import HostServices

log = Logger(namespace="mailmax.plugins")

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


class LookupCache:
    """A small thread-safe cache whose entries live ``seconds``.

    With a ``refresh`` function, an entry past half its life is still answered, and read again
    in the background (one read per key at a time), so that steady traffic never waits for a
    look-up; no answer is ever older than ``seconds``.
    """

    def __init__(
        self, seconds: float, limit: int = 20_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.limit = limit
        self.now = now
        self._items: dict[Any, tuple[float, Any]] = {}
        self._refreshing: set[Any] = set()
        self._generation = 0
        self._lock = threading.Lock()

    def get(
        self,
        key: Any,
        compute: Callable[[], Any],
        refresh: Callable[[Callable[[], None]], None] | None = None,
    ) -> Any:
        """The cached value of ``key``, else ``compute()``'s (cached)."""
        now = self.now()
        with self._lock:
            entry = self._items.get(key)
        if entry is not None and entry[0] > now:
            if refresh is not None and entry[0] - now <= self.seconds / 2:
                self._refresh(key, compute, refresh)
            return entry[1]
        value = compute()
        self._put(key, value, now, self._generation)
        return value

    def _refresh(
        self, key: Any, compute: Callable[[], Any], refresh: Callable[[Callable[[], None]], None]
    ) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        started, generation = self.now(), self._generation

        def read_again() -> None:
            try:
                self._put(key, compute(), started, generation)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        refresh(read_again)

    def _put(self, key: Any, value: Any, read_at: float, generation: int) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # read before a clear(): not to be trusted
            if len(self._items) >= self.limit:
                self._items.clear()
            self._items[key] = (read_at + self.seconds, value)

    def clear(self) -> None:
        """Forget every entry (a read in flight is not stored)."""
        with self._lock:
            self._items.clear()
            self._generation += 1


class PluginHost(HostServices):
    """The server's services for plugins (see the module documentation).

    ``clock`` drives key-value expiries and scheduled tasks (default: ``reactor``);
    ``settings`` are the server's (DNS servers, message size limit); ``metrics`` the
    process's registry (a new one by default).
    """

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        data_dir: Path | str = ".",
        sync_directory: Any = None,
        directory: Any = None,
        spool: Any = None,
        reactor: Any = None,
        cache_seconds: float = 1.0,
        clock: Any = None,
        settings: Any = None,
        metrics: Any = None,
    ) -> None:
        self.hostname = hostname
        self.data_dir = Path(data_dir)
        #: The blocking :class:`~mailmax.core.directory.sql.SQLDirectory` (or None).
        self.sync_directory = sync_directory
        #: The non-blocking :class:`~mailmax.core.directory.cached.AsyncDirectory` (or None).
        self.directory = directory
        self.spool = spool
        self.reactor = reactor
        self._cache = LookupCache(cache_seconds)
        self._events_lock = threading.Lock()
        #: The server's event bus (:class:`~mailmax.core.observe.events.EventBus`), or None:
        #: decisive plugin verdicts are published there (category ``policy``).
        self.event_bus: Any = None
        self._init_services(settings, clock, metrics)

    # ------------------------------------------------------------------ look-ups
    def _sync(self) -> Any:
        if self.sync_directory is None:
            raise RuntimeError("this plugin host has no directory")
        return self.sync_directory

    def lookup(self, address: str) -> RecipientLookup:
        """The directory's answer for ``address`` (blocking; cached briefly)."""
        return self._cache.get(
            ("rcpt", address.lower()),
            lambda: self._sync().lookup_recipient(address),
            self._refresher(),
        )

    def domain(self, name: str) -> Domain | None:
        """The domain called (or aliased by) ``name``, or None (blocking; cached briefly)."""
        return self._cache.get(
            ("domain", name.lower()), lambda: self._sync().get_domain(name), self._refresher()
        )

    def _refresher(self) -> Callable[[Callable[[], None]], None] | None:
        """How a look-up is read again in the background: in a thread, when called in the
        reactor's thread of a running server; otherwise not at all (it waits instead)."""
        if self.reactor is None or not threadable.isInIOThread():
            return None
        return self._read_in_background

    def _read_in_background(self, read_again: Callable[[], None]) -> None:
        self._in_thread(read_again).addErrback(
            lambda failure: log.failure("reading a directory look-up again failed", failure)
        )

    def get_user(self, address: str) -> defer.Deferred[Any]:
        """The user at ``address`` or None, without blocking (a Deferred)."""
        if self.directory is not None:
            return self.directory.get_user(address)
        return self._in_thread(self._sync().get_user, address)

    def is_local(self, address: str) -> bool:
        """True when ``address``'s domain is one of ours (blocking; cached briefly)."""
        _, at, domain = address.rpartition("@")
        return bool(at) and self.domain(domain) is not None

    def clear_cache(self) -> None:
        """Forget every cached look-up (after a reload)."""
        self._cache.clear()

    # ------------------------------------------------------------------ threads
    def _in_thread(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        if self.reactor is None:
            return defer.maybeDeferred(function, *args)
        if self.directory is not None:
            return self.directory.run(function, *args)
        return threads.deferToThread(function, *args)

    # ------------------------------------------------------------------ events
    def events_path(self, kind: str) -> Path:
        """The file holding the events of ``kind``."""
        if not _KIND.match(kind):
            raise ValueError(f"event kind {kind!r}: use lower-case letters, digits, - and _")
        return self.data_dir / "events" / f"{kind}.jsonl"

    def _append_event(self, kind: str, record: dict[str, Any]) -> None:
        path = self.events_path(kind)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._events_lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def record_event(self, kind: str, **fields: Any) -> defer.Deferred[None]:
        """Append one event (``fields`` plus ``time``) to ``<data>/events/<kind>.jsonl``.

        The Deferred fires once the line is on disk.
        """
        record = {"time": time.time(), **fields}
        log.info("event {kind}: {record}", kind=kind, record=json.dumps(record, default=str))
        return self._in_thread(self._append_event, kind, record)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Every recorded event of ``kind``, oldest first (blocking)."""
        path = self.events_path(kind)
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return out

    # ------------------------------------------------------------------ secrets
    def secret(self, name: str) -> bytes:
        """A random 32-byte key for ``name``, made once and kept in ``<data>/secrets/``."""
        if not _KIND.match(name):
            raise ValueError(f"secret name {name!r}: use lower-case letters, digits, - and _")
        folder = self.data_dir / "secrets"
        path = folder / f"{name}.key"
        if not path.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, secrets_mod.token_hex(32).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # the first writer wins; others read its key
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_bytes().strip()

    # ------------------------------------------------------------------ queueing
    def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        message_path: str | Path,
        *,
        queue_id: str | None = None,
        client_ip: str = "",
    ) -> defer.Deferred[str]:
        """Queue a copy of the message at ``message_path`` from ``sender`` to ``recipients``.

        Fires with the queue id once the copy is durable. With ``queue_id``, a message already
        queued under that id is not queued again (so a retried delivery does not send twice).
        """
        if self.spool is None:
            return defer.fail(RuntimeError("this plugin host has no spool"))
        return defer.ensureDeferred(
            self._submit(sender, list(recipients), Path(message_path), queue_id, client_ip)
        )

    async def _submit(
        self,
        sender: str,
        recipients: list[str],
        message: Path | bytes,
        queue_id: str | None,
        client_ip: str,
    ) -> str:
        from mailmax.core.queue.local import classify
        from mailmax.core.spool.envelope import SpoolEnvelope, check_id

        spool = self.spool
        if queue_id is not None:
            check_id(queue_id)
            if await self._in_thread(spool.envelope_path(queue_id).exists):
                return queue_id
        new_id = queue_id or spool.new_id()

        def prepare() -> tuple[list[Any], bytes]:
            classified = [classify(self._sync(), address) for address in recipients]
            data = message if isinstance(message, bytes) else spool.message_bytes(message)
            return classified, data

        classified, data = await self._in_thread(prepare)
        envelope = SpoolEnvelope(
            id=new_id,
            sender=sender,
            recipients=classified,
            received_at=time.time(),
            size=len(data),
            client_ip=client_ip,
        )
        await spool.accept(envelope, [data])
        log.info(
            "queued {queue_id} from <{sender}> to {rcpts} (plugin copy)",
            queue_id=new_id,
            sender=sender,
            rcpts=",".join(recipients),
        )
        return new_id
