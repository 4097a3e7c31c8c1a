"""MailMax's SMTP client: one connection to a remote server, driven by coroutines.

What it does beyond the basics, and why it is not Twisted's ``SMTPClient``:

- **Dot-stuffing for any message size.** The message is streamed from the spool file through
  :class:`DotStuffer`, which remembers across chunk boundaries whether the next byte starts a
  line, and turns bare CR and bare LF into CRLF, so no content can ever end the DATA phase
  early or become commands at the next hop.
- **STARTTLS without response injection.** Replies that arrive together with the ``220`` to
  STARTTLS, before the TLS handshake, were not protected by TLS: their presence drops the
  connection (RFC 3207 section 6).
- **PIPELINING** (RFC 2920): MAIL, every RCPT and DATA go out in one write when the server
  offers it; the replies are matched up in order. The next transaction on the connection may
  follow the end of a message at once, before its reply (``on_sent``): the message content
  may begin a group of pipelined commands.
- EHLO with a HELO fallback, SIZE (RFC 1870), 8BITMIME (RFC 6152), AUTH PLAIN and LOGIN
  (credentials only over TLS), a timeout on every reply, bounded reply size.

A method that fails at the session level raises :class:`SessionError` (the caller may try the
next host); per-recipient answers are returned, never raised.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, error, interfaces, protocol
from twisted.python.failure import Failure
from zope.interface import implementer

#: Longest reply line accepted (RFC 5321 says 512; servers send more).
MAX_REPLY_LINE = 4096
#: Most lines in one multi-line reply.
MAX_REPLY_LINES = 200
#: Bytes read from the spool file per write when sending a message.
CHUNK_SIZE = 64 * 1024
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*)\Z", re.S)
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and the text of each line."""

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def text(self) -> str:
        """The reply's text, lines joined with spaces."""
        return " ".join(line.strip() for line in self.lines).strip()

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463), or one derived from the basic code."""
        match = _STATUS.match(self.lines[0]) if self.lines else None
        if match and match.group(1) == str(self.code)[0]:
            return f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
        return f"{str(self.code)[0]}.0.0"

    @property
    def permanent(self) -> bool:
        """True for a 5xx reply."""
        return self.code >= 500

    @property
    def positive(self) -> bool:
        """True for a 2xx or 3xx reply."""
        return self.code < 400

    def __str__(self) -> str:
        text = self.text
        if _STATUS.match(text):
            return f"{self.code} {text}"
        return f"{self.code} {self.status} {text}".rstrip()


class SessionError(Exception):
    """The session with a server cannot go on; ``diagnostic`` is an SMTP-style reply.

    ``temporary`` is false when the server refused for good (a 5xx to MAIL FROM, a message
    larger than its SIZE limit): then every recipient of the transaction fails.
    """

    def __init__(self, diagnostic: str, *, temporary: bool = True) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.temporary = temporary


class DotStuffer:
    """Turns raw message bytes, chunk by chunk, into the DATA stream (RFC 5321 4.5.2).

    Keeps two bits of state across chunks: whether the next byte starts a line, and whether
    the previous chunk ended in a CR whose LF may come next. Lines end in CRLF on the wire.
    """

    def __init__(self) -> None:
        self.at_line_start = True
        self.pending_cr = False

    def __call__(self, chunk: bytes) -> bytes:
        """The stuffed form of the next chunk of the message."""
        if self.pending_cr:
            chunk = b"\r" + chunk
            self.pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self.pending_cr = True
        if not chunk:
            return b""
        pairs = chunk.count(b"\r\n")
        if chunk.count(b"\r") != pairs or chunk.count(b"\n") != pairs:
            chunk = _LINE_END.sub(b"\r\n", chunk)
        if self.at_line_start and chunk[:1] == b".":
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        self.at_line_start = chunk.endswith(b"\n")
        return chunk

    def finish(self) -> bytes:
        """What ends the DATA stream: a line end if the message lacks one, then ``.``."""
        if self.pending_cr:
            self.pending_cr = False
            self.at_line_start = True
            return b"\r\n.\r\n"
        return b".\r\n" if self.at_line_start else b"\r\n.\r\n"


def stuff(message: bytes) -> bytes:
    """The whole DATA stream for ``message`` (tests and small messages)."""
    stuffer = DotStuffer()
    return stuffer(message) + stuffer.finish()


@implementer(interfaces.IPullProducer)
class _MessageProducer:
    """Streams a file through a :class:`DotStuffer` into a transport, then ends DATA."""

    def __init__(self, handle: IO[bytes], transport: Any) -> None:
        self.handle: IO[bytes] | None = handle
        self.transport = transport
        self.stuffer = DotStuffer()
        self.done: defer.Deferred[None] = defer.Deferred()

    def start(self) -> defer.Deferred[None]:
        self.transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self) -> None:
        if self.handle is None:
            return
        chunk = self.handle.read(CHUNK_SIZE)
        if len(chunk) == CHUNK_SIZE:
            self.transport.write(self.stuffer(chunk))
            return
        # the last chunk and the end of DATA leave in one write
        self.transport.write(self.stuffer(chunk) + self.stuffer.finish())
        self._finish(None)

    def stopProducing(self) -> None:
        self._finish(SessionError("451 4.4.2 Connection lost while sending the message"))

    def _finish(self, problem: Exception | None) -> None:
        if self.handle is None:
            return
        self.handle.close()
        self.handle = None
        self.transport.unregisterProducer()
        if problem is None:
            self.done.callback(None)
        else:
            self.done.errback(problem)


@dataclass
class Transaction:
    """The result of one MAIL transaction: the final reply for every recipient."""

    replies: dict[str, Reply] = field(default_factory=dict)
    #: True when the connection is still in a clean state for another transaction.
    reusable: bool = False
    #: Recipients answered ``452`` at RCPT while others were accepted: the server wants them
    #: in a next transaction (too many recipients, or other content checks), not later.
    send_again: list[str] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Waiter:
    """Who waits for the next replies: ``names`` says what each answers, ``got`` holds
    those already in."""

    d: defer.Deferred[list[Reply]]
    names: list[str]
    got: list[Reply]


class SMTPClient(protocol.Protocol):
    """One connection to an SMTP server. Create, connect, then call :meth:`start`."""

    transport: Any

    def __init__(self, *, reactor: Any, timeout: float, host: str = "") -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.host = host
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.tls = False
        self.connected = False
        self.broken = False
        self._buffer = bytearray()
        self._lines: list[tuple[int, str]] = []
        self._replies: deque[Reply] = deque()
        #: Who waits for the next replies, in order.
        self._waiting: deque[_Waiter] = deque()
        #: One timer for all the waiters: it fires ``timeout`` seconds after the last sign of
        #: progress (a reply, or a first waiter), and is moved on lazily when it fires.
        self._timer: Any = None
        self._progress = 0.0
        #: Drop the connection once the replies awaited now are in (see :meth:`drop`).
        self._dropping = False
        self._lost: Failure | None = None
        self._tls_started = False

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        """The TCP connection is up; the greeting comes next."""
        self.connected = True

    def dataReceived(self, data: bytes) -> None:
        """Collect complete replies and hand each to the oldest waiter."""
        self._buffer += data
        while not self.broken:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    self._protocol_error("reply line too long")
                return
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        match = _REPLY_LINE.match(raw)
        if len(raw) > MAX_REPLY_LINE or match is None:
            self._protocol_error(f"malformed reply {raw[:60]!r}")
            return
        code = int(match.group(1))
        if self._lines and self._lines[0][0] != code:
            self._protocol_error("reply lines with different codes")
            return
        self._lines.append((code, match.group(3).decode("utf-8", "replace")))
        if len(self._lines) > MAX_REPLY_LINES:
            self._protocol_error("reply too long")
            return
        if match.group(2) != b"-":
            reply = Reply(code, tuple(text for _, text in self._lines))
            self._lines = []
            self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        if self._waiting:
            waiter = self._waiting[0]
            waiter.got.append(reply)
            self._progress = self.reactor.seconds()
            if len(waiter.got) == len(waiter.names):
                self._waiting.popleft()
                waiter.d.callback(waiter.got)
                if self._dropping and not self._waiting:
                    self.abort()
        else:
            self._replies.append(reply)

    def _protocol_error(self, why: str) -> None:
        self.broken = True
        self._fail_waiters(SessionError(f"451 4.5.0 Protocol error from {self.host}: {why}"))
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """Fail whoever waits for a reply."""
        self.connected = False
        self._lost = reason
        why = "connection closed"
        if not reason.check(error.ConnectionDone):
            why = f"connection lost ({reason.getErrorMessage()})"
        if self._tls_started and not reason.check(error.ConnectionDone, error.ConnectionLost):
            why = f"TLS negotiation failed ({reason.getErrorMessage()})"
        self._fail_waiters(SessionError(f"451 4.4.2 {self.host}: {why}"))
        self._stop_timer()

    def _fail_waiters(self, problem: Exception) -> None:
        while self._waiting:
            self._waiting.popleft().d.errback(problem)

    # ------------------------------------------------------------------ replies
    async def read_reply(self, what: str = "reply") -> Reply:
        """The next reply (in order), failing after ``timeout`` seconds or on disconnect."""
        (reply,) = await self.read_replies([what])
        return reply

    def read_replies(self, names: Sequence[str]) -> defer.Deferred[list[Reply]]:
        """The next ``len(names)`` replies (in order) at once, failing when one of them does
        not come within ``timeout`` seconds of the one before (``names`` say what each
        answers) or on disconnect."""
        got = [self._replies.popleft() for _ in range(min(len(names), len(self._replies)))]
        if len(got) == len(names):
            return defer.succeed(got)
        if self.broken or not self.connected:
            return defer.fail(SessionError(f"451 4.4.2 {self.host}: connection closed"))
        waiter = _Waiter(defer.Deferred(), list(names), got)
        if not self._waiting:
            self._progress = self.reactor.seconds()
        self._waiting.append(waiter)
        if self._timer is None:
            self._timer = self.reactor.callLater(self.timeout, self._check_timeout)
        return waiter.d

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        left = self._progress + self.timeout - self.reactor.seconds()
        if left > 0:
            self._timer = self.reactor.callLater(left, self._check_timeout)
            return
        waiter = self._waiting.popleft()
        what = waiter.names[len(waiter.got)]
        self.broken = True
        waiter.d.errback(
            SessionError(f"451 4.4.2 {self.host}: no {what} within {self.timeout:g} seconds")
        )
        self._fail_waiters(SessionError(f"451 4.4.2 {self.host}: timed out"))
        self.abort()

    def send_line(self, line: str) -> None:
        """Write one command line."""
        self.transport.write(line.encode("utf-8") + b"\r\n")

    async def command(self, line: str, what: str = "") -> Reply:
        """Send a command and wait for its reply."""
        self.send_line(line)
        return await self.read_reply(what or f"reply to {line.split(' ', 1)[0]}")

    def idle_ok(self) -> bool:
        """True when the connection can carry another transaction (open, nothing unread)."""
        return bool(
            self.connected
            and not self.broken
            and not self._dropping
            and not self._replies
            and not self._buffer
            and not self._lines
            and not self._waiting
        )

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def pipelines(self) -> bool:
        """True when a new transaction may start before the replies awaited now are in: the
        server offers PIPELINING and the connection is open, sound and not being dropped."""
        return bool(
            self.connected and not self.broken and not self._dropping and self.offers("PIPELINING")
        )

    def drop(self) -> None:
        """Drop the connection once the replies awaited now are in (at once when none are):
        a transaction that gives up on a connection leaves an earlier one's last reply alone."""
        self._dropping = True
        if not self._waiting:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now."""
        self.broken = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abortConnection()

    # ------------------------------------------------------------------ session set-up
    async def start(self, helo_name: str) -> None:
        """Read the greeting and say EHLO (HELO when EHLO is refused)."""
        greeting = await self.read_reply("greeting")
        if greeting.code != 220:
            raise SessionError(f"{greeting} (greeting of {self.host})", temporary=True)
        await self.hello(helo_name)

    async def hello(self, helo_name: str) -> None:
        """EHLO, with HELO as the fallback; records the offered extensions."""
        reply = await self.command(f"EHLO {helo_name}")
        if reply.code == 250:
            self.esmtp = True
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, value = line.strip().partition(" ")
                self.extensions[keyword.upper()] = value.strip()
            return
        if reply.code == 421:
            raise SessionError(f"{reply} (EHLO at {self.host})")
        reply = await self.command(f"HELO {helo_name}")
        if reply.code != 250:
            raise SessionError(f"{reply} (HELO at {self.host})")
        self.esmtp = False
        self.extensions = {}

    def offers(self, extension: str) -> bool:
        """True when the server listed ``extension`` in its EHLO reply."""
        return extension.upper() in self.extensions

    async def starttls(self, options: Any, helo_name: str) -> None:
        """STARTTLS, then EHLO again over TLS (RFC 3207)."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise SessionError(f"{reply} (STARTTLS at {self.host})")
        if self._replies or self._buffer or self._lines:
            self.abort()
            raise SessionError(
                f"451 4.7.0 {self.host} sent data before the TLS handshake (response "
                "injection); connection dropped"
            )
        self._tls_started = True
        self.transport.startTLS(options)
        self.tls = True
        await self.hello(helo_name)

    async def auth(self, username: str, password: str) -> None:
        """AUTH PLAIN (or LOGIN) with the given credentials; only on a TLS connection."""
        if not self.tls:
            raise SessionError(
                f"451 4.7.0 {self.host} offers no TLS; credentials are not sent in clear text"
            )
        methods = self.extensions.get("AUTH", "").upper().split()
        user, secret = username.encode("utf-8"), password.encode("utf-8")
        if "PLAIN" in methods:
            token = base64.b64encode(b"\0" + user + b"\0" + secret).decode("ascii")
            reply = await self.command(f"AUTH PLAIN {token}", "reply to AUTH")
        elif "LOGIN" in methods:
            reply = await self.command("AUTH LOGIN", "reply to AUTH")
            for value in (user, secret):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(value).decode("ascii"), "AUTH")
        else:
            raise SessionError(f"451 4.7.0 {self.host} offers no AUTH method MailMax can use")
        if reply.code != 235:
            raise SessionError(f"{reply} (AUTH at {self.host} as {username})")

    # ------------------------------------------------------------------ the transaction
    async def transaction(
        self,
        sender: str,
        recipients: Sequence[str],
        message: Path,
        *,
        size: int,
        eight_bit: bool = False,
        content: bytes | None = None,
        skip: int = 0,
        mail_params: str = "",
        on_sent: Callable[[], None] | None = None,
    ) -> Transaction:
        """MAIL, RCPT for each recipient, DATA and the message; a reply per recipient.

        ``mail_params`` (`` KEY=VALUE...``) is added to the MAIL command as it is.

        ``on_sent`` is called once the whole message is written and its reply awaited, when
        the connection could carry the next transaction already (PIPELINING, and no
        recipient to send again here); that transaction's replies come after this one's.

        The message is ``content`` when given, else it is streamed from the file ``message``
        less its first ``skip`` bytes.

        Raises :class:`SessionError` when the server refuses the sender or the message as a
        whole before any recipient could be answered, or when the connection fails.
        """
        limit = self.extensions.get("SIZE", "")
        if limit.isdigit() and 0 < int(limit) < size:
            raise SessionError(
                f"552 5.3.4 Message of {size} bytes exceeds the limit of {self.host} "
                f"({limit} bytes)",
                temporary=False,
            )
        mail = f"MAIL FROM:<{sender}>"
        if self.offers("SIZE"):
            mail += f" SIZE={size}"
        if eight_bit and self.offers("8BITMIME"):
            mail += " BODY=8BITMIME"
        mail += mail_params
        rcpts = [f"RCPT TO:<{address}>" for address in recipients]
        if self.offers("PIPELINING"):
            self.transport.write("".join(f"{c}\r\n" for c in [mail, *rcpts, "DATA"]).encode())
            *replies, data_reply = await self.read_replies(
                [f"reply to {c[:4]}" for c in [mail, *rcpts, "DATA"]]
            )
        else:
            replies = [await self.command(mail)]
            if not replies[0].positive:
                self._refused_sender(replies[0])
            for line in rcpts:
                replies.append(await self.command(line, "reply to RCPT"))
            data_reply = None
            if any(r.positive for r in replies[1:]):
                data_reply = await self.command("DATA")
        return await self._finish(replies, recipients, data_reply, message, content, skip, on_sent)

    def _refused_sender(self, reply: Reply) -> None:
        raise SessionError(f"{reply} (MAIL FROM at {self.host})", temporary=not reply.permanent)

    async def _finish(
        self,
        replies: list[Reply],
        recipients: Sequence[str],
        data_reply: Reply | None,
        message: Path,
        content: bytes | None = None,
        skip: int = 0,
        on_sent: Callable[[], None] | None = None,
    ) -> Transaction:
        mail_reply, rcpt_replies = replies[0], replies[1:]
        if not mail_reply.positive:
            if data_reply is not None and data_reply.code == 354:
                await self._abandon_data()
            self._refused_sender(mail_reply)
        result = Transaction()
        accepted = []
        for address, reply in zip(recipients, rcpt_replies, strict=True):
            if reply.positive:
                accepted.append(address)
            else:
                result.replies[address] = reply
        if accepted:
            result.send_again = [
                a for a in recipients if a in result.replies and result.replies[a].code == 452
            ]
        if data_reply is not None and data_reply.code == 421:
            raise SessionError(f"{data_reply} (DATA at {self.host})")
        if not accepted:
            if data_reply is not None and data_reply.code == 354:
                await self._abandon_data()
            result.reusable = await self._reset()
            return result
        assert data_reply is not None
        if data_reply.code != 354:
            for address in accepted:
                result.replies[address] = data_reply
            result.reusable = await self._reset()
            return result
        await self._send_message(message, content, skip)
        awaited = self.read_replies(["reply to the end of the message"])
        if on_sent is not None and not result.send_again and self.pipelines():
            on_sent()
        (final,) = await awaited
        for address in accepted:
            result.replies[address] = final
        result.reusable = final.code != 421 and not self.broken
        return result

    async def _send_message(self, message: Path, content: bytes | None, skip: int = 0) -> None:
        if content is not None:
            self.transport.write(stuff(content))
            return
        handle = open(message, "rb")  # noqa: SIM115 - closed by the producer
        handle.seek(skip)
        await _MessageProducer(handle, self.transport).start()

    async def _abandon_data(self) -> None:
        """Every recipient was refused but DATA was accepted: end it with an empty message."""
        self.transport.write(b".\r\n")
        await self.read_reply("reply to an empty message")

    async def _reset(self) -> bool:
        if self.broken or not self.connected:
            return False
        try:
            reply = await self.command("RSET")
        except SessionError:
            return False
        return reply.code == 250

    async def quit(self) -> None:
        """QUIT politely, then close (never raises)."""
        if self.connected and not self.broken:
            try:
                self.send_line("QUIT")
                self.transport.loseConnection()
            except Exception:
                self.abort()
