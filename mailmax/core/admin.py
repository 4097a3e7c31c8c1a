"""The server's local admin channel: a UNIX socket, ``<data>/run/admin.sock``, mode 0600.

A tiny line protocol: the client sends one command line, the server answers one line,
``OK <text>`` or ``ERR <text>``, and closes. Commands:

- ``reload``: re-read the config, apply what can change live and swap in a freshly built
  plugin set; answers a JSON report (plugins, keys applied, keys needing a restart; see
  :meth:`mailmax.core.service.MailMaxService.reload`); ``ERR`` says why a reload was refused.
- ``plugins``: the running plugin set, as JSON after ``OK``.
- ``metrics``: the counters and gauges of plugins and the host, as JSON after ``OK``.
- ``ping``: ``OK pong``.
- ``auth-blocked``: the failed-login blocks and account delays in force, as JSON after ``OK``
  (see :meth:`mailmax.core.authlimit.AuthLimiter.current`).
- ``auth-unblock IP|ACCOUNT``: forget the failed logins of an IP or an account.
- ``plugin-command NAME ACTION``: a loaded plugin's own command (its ``ADMIN_COMMANDS``; see
  :meth:`mailmax.core.pluginhost.runtime.PluginRuntime.plugin_command`).
- ``trace FILTER``, ``stats``, ``metrics-prometheus``: live events, activity counters and the
  Prometheus text (see :mod:`mailmax.core.observe.hub`). A *stream* command such as ``trace``
  answers ``OK`` and then keeps sending lines until the client closes.

A command may take one argument after a space.

Only the owner of the data directory can connect (the socket and ``run/`` are private).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

log = Logger(namespace="mailmax.admin")

SOCKET_NAME = "admin.sock"
#: Longest command line accepted.
MAX_LINE = 1024


def socket_path(data_dir: Path) -> Path:
    """Where the admin socket of the server using ``data_dir`` listens."""
    return data_dir / "run" / SOCKET_NAME


class AdminError(Exception):
    """The admin channel could not be used or the server refused the command."""


class AdminProtocol(LineOnlyReceiver):
    """One admin connection: one command, one answer."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE
    factory: AdminFactory

    streaming = False
    #: Called with no argument when the connection closes (streams stop there).
    on_close: Callable[[], None] | None = None

    def lineReceived(self, line: bytes) -> None:
        """Run the command and answer."""
        if self.streaming:
            return
        command = line.decode("utf-8", "replace").strip()
        name, _, argument = command.partition(" ")
        stream = self.factory.streams.get(name)
        if stream is not None:
            self.streaming = True
            try:
                stream(argument.strip(), self)
            except AdminError as exc:
                self._answer("ERR", str(exc))
            return
        d = defer.maybeDeferred(self.factory.handle, command)
        d.addCallbacks(lambda text: self._answer("OK", text), self._failed)

    def _failed(self, failure: Any) -> None:
        if failure.check(AdminError):
            self._answer("ERR", str(failure.value))
        else:
            log.failure("admin command failed", failure)
            self._answer("ERR", f"internal error: {failure.getErrorMessage()}")

    def _answer(self, status: str, text: str) -> None:
        one_line = " | ".join(str(text).splitlines()) if text else ""
        self.sendLine(f"{status} {one_line}".rstrip().encode())
        self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """Refuse over-long input."""
        self._answer("ERR", "command line too long")

    def connectionLost(self, reason: Any = None) -> None:
        """Stop a stream this connection was running."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


class AdminFactory(protocol.ServerFactory):
    """Answers admin commands with the given handlers (``name -> callable() -> text``)."""

    protocol = AdminProtocol
    noisy = False

    def __init__(
        self,
        handlers: dict[str, Callable[[], Any]],
        with_argument: dict[str, Callable[[str], Any]] | None = None,
        streams: dict[str, Callable[[str, AdminProtocol], None]] | None = None,
    ) -> None:
        self.handlers = handlers
        #: Commands that take one argument (``name argument``).
        self.with_argument = with_argument or {}
        #: Commands that keep the connection and send lines: ``handler(argument, protocol)``
        #: answers ``OK`` itself (or raises AdminError) and sets ``protocol.on_close``.
        self.streams = streams or {}

    def handle(self, command: str) -> Any:
        """The answer text for ``command`` (may be a Deferred); AdminError if refused."""
        name, _, argument = command.partition(" ")
        argument = argument.strip()
        if name in self.with_argument:
            if not argument:
                raise AdminError(f"{name} needs an argument")
            return self.with_argument[name](argument)
        handler = self.handlers.get(command)
        if handler is None:
            known = ", ".join([*self.handlers, *self.with_argument, *self.streams])
            raise AdminError(f"unknown command {command!r}; known: {known}")
        return handler()


def listen(reactor: Any, data_dir: Path, factory: AdminFactory) -> defer.Deferred[IListeningPort]:
    """Listen on ``<data>/run/admin.sock`` (a stale socket file is replaced)."""
    path = socket_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return defer.fail(AdminError(f"{path} exists and is not a socket; remove it"))
        path.unlink()
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        endpoint = endpoints.UNIXServerEndpoint(reactor, str(path), mode=0o600, wantPID=False)
        return endpoint.listen(factory)
    finally:
        os.umask(old_umask)


def connect(data_dir: Path, timeout: float | None = 60.0) -> socket.socket:
    """A connection to the admin channel of the server using ``data_dir``.

    Raises :class:`AdminError` saying why when no server listens or it may not be used.
    """
    path = socket_path(data_dir)
    if not path.exists():
        raise AdminError(
            f"no running server: {path} does not exist (start it with `twistd mailmax`)"
        )
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        client.close()
        raise AdminError(f"no running server listens on {path}") from None
    except PermissionError:
        client.close()
        raise AdminError(
            f"permission denied on {path}: run this as the user the server runs as"
        ) from None
    return client


def request(data_dir: Path, command: str, timeout: float = 60.0) -> str:
    """Send ``command`` to the server using ``data_dir``; return the ``OK`` text.

    Raises :class:`AdminError` when no server listens or the server answers ``ERR``.
    """
    client = connect(data_dir, timeout)
    try:
        client.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        raise AdminError(f"the server did not answer {command!r} within {timeout:g}s") from None
    finally:
        client.close()
    answer = b"".join(chunks).decode("utf-8", "replace").strip()
    status, _, text = answer.partition(" ")
    if status == "OK":
        return text
    if status == "ERR":
        raise AdminError(text)
    raise AdminError(f"unexpected answer from the server: {answer!r}")


def plugins_summary(plugin_set: Any) -> str:
    """The running plugin set as one JSON line."""
    return json.dumps(
        {
            "plugins": [
                {"name": p.name, "origin": p.origin, "system_enabled": p.system_enabled}
                for p in plugin_set.plugins
            ],
            "hooks": {k: v for k, v in plugin_set.hook_order().items() if v},
        }
    )


def auth_commands(
    limiter: Any,
) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[str], Any]]]:
    """The admin commands on failed-login throttling of ``limiter`` (an
    :class:`mailmax.core.authlimit.AuthLimiter`): ``auth-blocked`` and ``auth-unblock``."""

    def unblock(target: str) -> str:
        if not target or any(ch.isspace() for ch in target):
            raise AdminError(f"give one IP address or account, not {target!r}")
        count = limiter.unblock(target)
        if not count:
            raise AdminError(f"no failed logins recorded for {target}")
        return json.dumps({"target": target, "records": count})

    return {"auth-blocked": lambda: json.dumps(limiter.current())}, {"auth-unblock": unblock}
