"""Test support for the queue runner: a directory in memory and a runner on a private reactor.

The directory here answers the four calls the runner makes of ``SQLDirectory`` (``get_user``,
``get_domain``, ``user_maildir``, ``lookup_recipient``) from dictionaries, so queue tests run
without a database; ``fail`` makes every call raise, like a database that went away.
"""

from __future__ import annotations

import email
import time
import types
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher

from mailmax.core import config
from mailmax.core.directory.api import Domain, Lookup, RecipientLookup, User
from mailmax.core.hooks import LoadedPlugin, PluginSet
from mailmax.core.hookspecs import hookimpl
from mailmax.core.queue.runner import QueueRunner
from mailmax.core.spool.envelope import SpoolEnvelope, SpoolRecipient
from mailmax.core.spool.spool import Spool
from mailmax.testing_server import folder_messages, maildir_folder
from tests.test_spool_reactor import ReactorThread


class MemoryDirectory:
    """Domains and users in dictionaries, answering like ``SQLDirectory``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.domains: dict[str, Domain] = {}
        self.users: dict[str, User] = {}
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.fail = False

    def add_domain(self, name: str, mail_dir: str = "", **fields: Any) -> Domain:
        """Add (or replace) a domain whose mail lives under the test directory."""
        domain = Domain(name, mail_dir or str(self.base / "mail" / name), **fields)
        self.domains[name] = domain
        return domain

    def add_user(self, address: str, **fields: Any) -> User:
        """Add (or replace) a user."""
        name, domain = address.lower().split("@")
        user = User(name, domain, **fields)
        self.users[user.address] = user
        return user

    def _check(self) -> None:
        if self.fail:
            raise RuntimeError("directory database unavailable")

    def get_user(self, address: str) -> User | None:
        """Like ``SQLDirectory.get_user``."""
        self._check()
        return self.users.get(address.lower())

    def get_domain(self, name: str) -> Domain | None:
        """Like ``SQLDirectory.get_domain``."""
        self._check()
        return self.domains.get(name.lower())

    def user_maildir(self, user: User) -> Path:
        """Like ``SQLDirectory.user_maildir``: ``<domain mail dir>/<name>``."""
        self._check()
        return Path(self.domains[user.domain].mail_dir) / user.name

    def lookup_recipient(self, address: str) -> RecipientLookup:
        """Like ``SQLDirectory.lookup_recipient`` (users, aliases, unknown, not local)."""
        self._check()
        address = address.lower()
        domain = self.domains.get(address.rpartition("@")[2])
        if domain is None:
            return RecipientLookup(Lookup.NOT_LOCAL, address)
        user = self.users.get(address)
        if user is not None:
            status = Lookup.USER if user.enabled else Lookup.DISABLED
            return RecipientLookup(status, address, domain, user)
        if address in self.aliases:
            return RecipientLookup(Lookup.ALIAS, address, domain, targets=self.aliases[address])
        return RecipientLookup(Lookup.UNKNOWN_USER, address, domain)


def plugin(name: str, **hooks: Callable[..., Any]) -> LoadedPlugin:
    """A plugin made of the given hook functions."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return LoadedPlugin(name, module)


class QueueHarness:
    """A spool and a queue runner on a private reactor, with example.com users."""

    def __init__(
        self, tmp_path: Path, rt: ReactorThread, directory: Any = None, **queue: Any
    ) -> None:
        self.rt = rt
        self.tmp_path = tmp_path
        smtp = {"max_hops": queue.pop("max_hops", 50)}
        self.settings = config.parse(
            {
                "server": {"hostname": "mx.example.com"},
                "queue": {"scan_interval": 0.2, "retry_minutes": 0.005, **queue},
                "smtp": smtp,
            }
        )
        self.directory = directory or MemoryDirectory(tmp_path)
        self.directory.add_domain("example.com", str(tmp_path / "mail" / "example.com"))
        for name in ("alice", "bob", "carol"):
            self.directory.add_user(f"{name}@example.com")
        self.plugin_set = PluginSet([])
        self.spool = Spool(tmp_path / "queue", reactor=rt.reactor, max_batch=8)
        self.runner = self.new_runner()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)

    def new_runner(self) -> QueueRunner:
        """A queue runner over this harness's spool, directory and plugins."""
        return QueueRunner(
            spool=self.spool,
            directory=self.directory,
            plugins=lambda: self.plugin_set,
            settings=self.settings,
            reactor=self.rt.reactor,
        )

    def start(self, runner: bool = True) -> None:
        """Start the spool, and the runner unless told not to."""
        self.rt.call(self.spool.start)
        if runner:
            self.rt.call(self.runner.startService)

    def stop(self) -> None:
        """Stop the runner and the spool."""
        if self.runner.running:
            self.rt.call(self.runner.stopService)
        self.rt.call(self.spool.stop)
        globalLogPublisher.removeObserver(self.events.append)

    # ------------------------------------------------------------------ mail
    def recipient(self, address: str) -> SpoolRecipient:
        """A spool recipient as the SMTP server records it (``mailbox`` set for users)."""
        if address.endswith("@example.com"):
            user = self.directory.get_user(address)
            return SpoolRecipient(address, mailbox=user.address if user else address)
        return SpoolRecipient(address, kind="relay")

    def submit(
        self,
        recipients: list[str],
        sender: str = "alice@example.com",
        body: bytes = b"Hello\r\n",
        received: int = 1,
        **params: str,
    ) -> str:
        """Queue a message the way the SMTP server does; return its id."""
        envelope = SpoolEnvelope(
            id=self.spool.new_id(),
            sender=sender,
            recipients=[self.recipient(a) for a in recipients],
            received_at=time.time(),
            params=params,
        )
        header = b"".join(
            f"Received: from hop{i}.example.org by mx.example.com; id {i}\r\n".encode()
            for i in range(received)
        )
        message = header + f"From: {sender}\r\nSubject: test\r\n\r\n".encode() + body
        return self.rt.call(self.spool.accept, envelope, [message])

    def maildir(self, address: str, folder: str = "INBOX") -> Path:
        """The Maildir folder of ``address``."""
        return maildir_folder(self.tmp_path / "mail", address, folder)

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """The messages in a Maildir folder (new and cur), oldest first."""
        return folder_messages(self.maildir(address, folder))

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        """Poll ``predicate`` until it is true; fail with the queue log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; log:\n" + "\n".join(self.log_lines()))

    def wait_mail(self, address: str, count: int = 1, folder: str = "INBOX") -> list[bytes]:
        """Wait until ``address`` has ``count`` messages in ``folder``; return them."""
        return self.wait_for(
            lambda: (m := self.messages(address, folder)) and len(m) >= count and m,
            f"{count} message(s) for {address}",
        )

    def wait_queue_empty(self) -> None:
        """Wait until no message is queued."""
        self.wait_for(lambda: not self.spool.pending_ids(), "an empty queue")

    def log_lines(self) -> list[str]:
        """The MailMax log lines emitted so far, formatted."""
        from twisted.logger import formatEvent

        return [
            formatEvent(e)
            for e in list(self.events)
            if e.get("log_namespace", "").startswith("mailmax")
        ]


def parse_dsn(data: bytes) -> tuple[EmailMessage, list[Any]]:
    """A DSN as the standard library reads it, and its per-recipient status blocks."""
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    status = next(p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status")
    return msg, status.get_payload()[1:]


def running(rt: ReactorThread, tmp_path: Path, **queue: Any) -> QueueHarness:
    """A started harness (the caller stops it)."""
    harness = QueueHarness(tmp_path, rt, **queue)
    harness.start()
    return harness
