"""Queue administration (``mailmax queue ...``): look at queued mail and act on it.

Reading is safe at any time: envelopes are replaced atomically. Changing needs care, because a
running queue runner may be working on the same message. So the admin command

- with no server running, takes the queue directory's lock itself and changes the files;
- with a server running (the lock is held), leaves a request in ``<queue>/control/`` that the
  runner carries out between its own deliveries (:class:`ControlWatcher`), and waits for the
  answer next to it.

Actions: ``retry`` (try the waiting recipients now; for mail held for ETRN, release the
domain), ``delete`` (drop the message, no bounce), ``bounce`` (return it to the sender now).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from mailmax.core.spool.envelope import SpoolEnvelope, check_id
from mailmax.core.spool.spool import Spool

log = Logger(namespace="mailmax.queue")

ACTIONS = ("retry", "delete", "bounce")
WAITING = ("pending", "deferred")
CONTROL_DIR = "control"
#: What a bounced recipient's DSN says.
RETURNED = "550 5.0.0 Returned to the sender by the mail administrator"
#: Seconds between looks into the control directory.
POLL_SECONDS = 0.5


class ControlError(Exception):
    """A queue command could not be carried out; the message says why."""


@dataclass(frozen=True)
class Request:
    """One admin action on the queue: on ``ids``, or on every message (``all``) or those with
    a waiting recipient at ``domain``."""

    action: str
    ids: tuple[str, ...] = ()
    all: bool = False
    domain: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ControlError(f"unknown action {self.action!r}; use one of {', '.join(ACTIONS)}")
        if not (self.ids or self.all or self.domain):
            raise ControlError("name a message id, --all or --domain DOMAIN")
        for queue_id in self.ids:
            try:
                check_id(queue_id)
            except ValueError:
                raise ControlError(f"{queue_id!r} is not a queue id") from None

    def to_json(self) -> str:
        """The request as one JSON object."""
        return json.dumps({**asdict(self), "ids": list(self.ids)})

    @classmethod
    def from_json(cls, text: str) -> Request:
        """Parse :meth:`to_json` output (ControlError when malformed)."""
        try:
            data = json.loads(text)
            return cls(
                action=str(data["action"]),
                ids=tuple(str(i) for i in data.get("ids", [])),
                all=bool(data.get("all", False)),
                domain=str(data.get("domain", "")).lower(),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ControlError(f"malformed queue request: {exc}") from None


@dataclass
class Result:
    """What a request did: the messages it changed, and a sentence for the admin."""

    ids: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    message: str = ""


def domain_of(address: str) -> str:
    """The domain of ``address`` in lower case."""
    return address.rpartition("@")[2].lower()


def waits_for(envelope: SpoolEnvelope, domain: str) -> bool:
    """True when ``envelope`` has a waiting recipient at ``domain`` (any, if empty)."""
    return any(
        r.state in WAITING and (not domain or domain_of(r.address) == domain)
        for r in envelope.recipients
    )


def change(envelope: SpoolEnvelope, action: str) -> bool:
    """Apply ``retry`` or ``bounce`` to the waiting recipients; True when something changed."""
    changed = False
    for recipient in envelope.recipients:
        if recipient.state not in WAITING:
            continue
        if action == "retry" and recipient.next_attempt > 0:
            recipient.next_attempt = 0.0
            changed = True
        elif action == "bounce":
            recipient.state, recipient.last_error = "failed", RETURNED
            changed = True
    return changed


def describe(action: str, count: int, released: list[str]) -> str:
    """The sentence reporting a finished request."""
    noun = "message" if count == 1 else "messages"
    text = {
        "retry": f"{count} {noun} will be tried now",
        "delete": f"{count} {noun} deleted",
        "bounce": f"{count} {noun} returned to the sender",
    }[action]
    if released:
        text += f"; mail held for {', '.join(released)} released"
    return text


# ---------------------------------------------------------------------- reading
def read_queue(directory: Path) -> Iterator[SpoolEnvelope]:
    """Every readable envelope in a queue directory, oldest first (blocking)."""
    env_dir = directory / "env"
    if not env_dir.is_dir():
        return
    for name in sorted(os.listdir(env_dir)):
        if not name.endswith(".json"):
            continue
        with contextlib.suppress(OSError, ValueError):
            yield SpoolEnvelope.from_json((env_dir / name).read_bytes())


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[bool]:
    """Hold the queue directory's lock; yields False (holding nothing) when a server has it."""
    if not directory.is_dir():
        yield True
        return
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def apply_offline(queue_dir: Path, hold_dir: Path, request: Request) -> Result:
    """Carry out ``request`` on the files; the caller holds both directories' locks.

    Held mail is not retried here (the running server sends it on ETRN); it can be deleted or
    bounced (the bounce goes out when the server starts).
    """
    result = Result()
    directories = [queue_dir] if request.action == "retry" else [queue_dir, hold_dir]
    for directory in directories:
        spool = Spool(directory, fsync=True)
        for envelope in list(read_queue(directory)):
            if request.ids and envelope.id not in request.ids:
                continue
            if not request.ids and not waits_for(envelope, request.domain):
                continue
            if request.action == "delete":
                spool.remove(envelope.id)
            elif change(envelope, request.action):
                spool.save(envelope)
            else:
                continue
            result.ids.append(envelope.id)
    return result


# ---------------------------------------------------------------------- with a running server
def submit(queue_dir: Path, request: Request, timeout: float = 30.0) -> Result:
    """Hand ``request`` to the running server and wait for its answer (blocking)."""
    control = queue_dir / CONTROL_DIR
    control.mkdir(mode=0o700, exist_ok=True)
    name = f"{time.time_ns():x}-{secrets.token_hex(4)}"
    tmp = control / f"{name}.tmp"
    tmp.write_text(request.to_json())
    os.replace(tmp, control / f"{name}.request")
    answer = control / f"{name}.done"
    deadline = time.monotonic() + timeout
    while not answer.exists():
        if time.monotonic() > deadline:
            with contextlib.suppress(FileNotFoundError):
                (control / f"{name}.request").unlink()
            raise ControlError(f"the server did not answer within {timeout:g}s; is it running?")
        time.sleep(0.05)
    data = json.loads(answer.read_text())
    answer.unlink()
    if not data.get("ok"):
        raise ControlError(data.get("error", "the server refused the request"))
    return Result(ids=data["ids"], released=data.get("released", []), message=data["message"])


class ControlWatcher:
    """The runner's side: picks up requests from ``<queue>/control/`` and answers them."""

    def __init__(
        self,
        directory: Path,
        handle: Callable[[Request], Awaitable[Result]],
        reactor: Any,
        in_thread: Callable[..., defer.Deferred[Any]],
    ) -> None:
        self.directory = directory / CONTROL_DIR
        self.handle = handle
        self.in_thread = in_thread
        self._loop = task.LoopingCall(self._poll)
        self._loop.clock = reactor
        self._busy = False

    def start(self) -> None:
        """Look for requests every :data:`POLL_SECONDS`."""
        self._loop.start(POLL_SECONDS, now=True)

    def stop(self) -> None:
        """Stop looking."""
        if self._loop.running:
            self._loop.stop()

    def _poll(self) -> None:
        if self._busy:
            return
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".request"))
        except FileNotFoundError:
            return
        if names:
            self._busy = True
            d = defer.ensureDeferred(self._run(names))
            d.addErrback(lambda f: log.failure("queue control failed", f))
            d.addBoth(lambda _: setattr(self, "_busy", False))

    async def _run(self, names: list[str]) -> None:
        for name in names:
            path = self.directory / name
            try:
                text = await self.in_thread(path.read_text)
                await self.in_thread(path.unlink)
            except FileNotFoundError:
                continue  # the admin gave up waiting
            answer: dict[str, Any]
            try:
                request = Request.from_json(text)
                result = await self.handle(request)
                answer = {"ok": True, **asdict(result)}
            except ControlError as exc:
                answer = {"ok": False, "error": str(exc)}
            except Exception as exc:
                log.failure("queue control request {name} failed", name=name)
                answer = {"ok": False, "error": f"internal error: {exc}"}
            await self.in_thread(_write_answer, self.directory / name, answer)


def _write_answer(request_path: Path, answer: dict[str, Any]) -> None:
    stem = request_path.name[: -len(".request")]
    tmp = request_path.with_name(f"{stem}.answer-tmp")
    tmp.write_text(json.dumps(answer))
    try:
        os.replace(tmp, request_path.with_name(f"{stem}.done"))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
