"""POP3 TRANSACTION and UPDATE states: STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, QUIT.

Messages go out byte for byte as stored, dot-stuffed; small ones in one write, large ones
streamed by :class:`~mailmax.core.pop3.sender.MessageSender` with flow control.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.pop3.errors import POP3Error, parse_number
from mailmax.core.pop3.maildrop import Maildrop
from mailmax.core.pop3.sender import SMALL_MESSAGE, MessageSender, TopFilter, stuff
from mailmax.core.store.errors import MessageGone
from mailmax.core.store.mailbox import MessageInfo

log = Logger(namespace="mailmax.pop3")


class TransactionMixin:
    """The commands of the TRANSACTION state (and QUIT's UPDATE), mixed into the protocol."""

    factory: Any
    transport: Any
    maildrop: Maildrop | None
    _send: Callable[[str], None]
    _close: Callable[..., None]
    _sid: Callable[[], str]
    _who: Callable[[], str]

    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _message(self, arg: str) -> tuple[int, MessageInfo]:
        number = parse_number(arg)
        drop = self._drop()
        info = drop.get(number)
        if info is None:
            if drop.exists(number):
                raise POP3Error(f"Message {number} is deleted")
            raise POP3Error(f"No message {number}")
        return number, info

    def pop_STAT(self, arg: str) -> None:
        """STAT: count and size of the messages not marked deleted."""
        if arg:
            raise POP3Error("Syntax: STAT")
        count, octets = self._drop().stat()
        self._send(f"+OK {count} {octets}")

    def pop_LIST(self, arg: str) -> None:
        """LIST [n]: message sizes."""
        if arg:
            number, info = self._message(arg)
            self._send(f"+OK {number} {info.size}")
            return
        drop = self._drop()
        count, octets = drop.stat()
        lines = [f"+OK {count} messages ({octets} octets)"]
        lines += [f"{number} {info.size}" for number, info in drop.live()]
        lines.append(".")
        self.transport.write("\r\n".join(lines).encode() + b"\r\n")

    def pop_UIDL(self, arg: str) -> None:
        """UIDL [n]: unique ids, stable across sessions and restarts."""
        drop = self._drop()
        if arg:
            number, info = self._message(arg)
            self._send(f"+OK {number} {drop.uidl(info)}")
            return
        lines = ["+OK Unique-ID listing follows"]
        lines += [f"{number} {drop.uidl(info)}" for number, info in drop.live()]
        lines.append(".")
        self.transport.write("\r\n".join(lines).encode() + b"\r\n")

    def pop_RETR(self, arg: str) -> defer.Deferred[bool] | None:
        """RETR n: the whole message."""
        _, info = self._message(arg)
        return self._send_message(info, f"+OK {info.size} octets", None)

    def pop_TOP(self, arg: str) -> defer.Deferred[bool] | None:
        """TOP n lines: the header and the first ``lines`` lines of the body."""
        words = arg.split()
        if len(words) != 2:
            raise POP3Error("Syntax: TOP message lines")
        _, info = self._message(words[0])
        lines = parse_number(words[1], "line count")
        return self._send_message(info, "+OK Top of message follows", TopFilter(lines))

    def _send_message(
        self, info: MessageInfo, status: str, top: TopFilter | None
    ) -> defer.Deferred[bool] | None:
        drop = self._drop()
        prefix = status.encode() + b"\r\n"
        try:
            if info.size <= SMALL_MESSAGE:
                data = drop.read_small(info, SMALL_MESSAGE)
                if data is not None:
                    if top is not None:
                        data = top.feed(data)
                    self.transport.write(prefix + stuff(data))
                    return None
            handle = drop.open_message(info)
        except MessageGone:
            raise POP3Error("[SYS/TEMP] That message was removed by another session") from None
        sender = MessageSender(self.output, handle, self.factory.blocking, top, prefix)
        return sender.start().addErrback(self._stream_failed, info.uid)

    def _stream_failed(self, failure: Failure, uid: int) -> bool:
        """Reading failed half-way: nothing sensible can follow the partial message."""
        log.failure("cannot send message UID {uid} to {user}", failure, uid=uid, user=self._who())
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()
        return False

    def pop_DELE(self, arg: str) -> None:
        """DELE n: mark for deletion at QUIT."""
        number, _ = self._message(arg)
        self._drop().deleted.add(number)
        self._send(f"+OK Message {number} deleted")

    def pop_NOOP(self, arg: str) -> None:
        """NOOP."""
        self._send("+OK")

    def pop_RSET(self, arg: str) -> None:
        """RSET: unmark every message marked deleted."""
        drop = self._drop()
        drop.deleted.clear()
        count, octets = drop.stat()
        self._send(f"+OK Maildrop has {count} messages ({octets} octets)")

    def pop_QUIT(self, arg: str) -> defer.Deferred[None] | None:
        """QUIT: in TRANSACTION state, remove the deleted messages (UPDATE), then close."""
        drop, self.maildrop = self.maildrop, None
        if drop is None:
            self._close("+OK MailMax POP3 server signing off")
            return None
        return defer.ensureDeferred(self._update(drop))

    async def _update(self, drop: Maildrop) -> None:
        def commit_and_unlock() -> int:
            try:
                return drop.commit()
            finally:
                drop.unlock()

        wanted = len(drop.deleted)
        try:
            removed = await self.factory.blocking(commit_and_unlock)
        except Exception:
            log.failure("cannot expunge for {user}", user=self._who())
            self._close("-ERR [SYS/TEMP] Some deleted messages could not be removed")
            return
        finally:  # closing the index may checkpoint it: the reply does not wait for that
            closing = self.factory.blocking(drop.close)
            closing.addErrback(lambda f: log.failure("cannot close the mailbox index", f))
        log.info(
            "quit {user} session {session_id}: {removed} of {wanted} deleted messages removed",
            user=self._who(),
            session_id=self._sid(),
            removed=removed,
            wanted=wanted,
        )
        self._close(f"+OK MailMax POP3 server signing off ({removed} messages deleted)")
