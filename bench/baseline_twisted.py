"""The "Twisted floor": a minimal twisted.mail.smtp ESMTP server writing every message to a Maildir.

Every recipient is accepted. Each message is written to ``tmp/``, the file is fsynced, renamed
into ``new/`` and the ``new/`` directory is fsynced, all inline on the reactor thread, before the
250 reply. This is the baseline an SMTP server built on Twisted must beat.

Usage::

    python bench/baseline_twisted.py --port 2525 --maildir /tmp/floor/Maildir [--no-fsync]

It listens on 127.0.0.1 only and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import sys
import time
from pathlib import Path

from twisted.internet import defer
from twisted.mail import smtp
from zope.interface import implementer

HOSTNAME = "floor.localdomain"


def ensure_maildir(path: Path) -> None:
    """Create ``path`` with its ``cur``, ``new`` and ``tmp`` subdirectories."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


class MaildirWriter:
    """Writes complete messages into one Maildir: tmp, fsync, rename to new, fsync new/."""

    def __init__(self, maildir: Path, fsync: bool = True) -> None:
        """Write into ``maildir`` (created if missing); ``fsync=False`` skips both fsyncs."""
        ensure_maildir(maildir)
        self.maildir = maildir
        self.fsync = fsync
        self._serial = itertools.count()
        self._pid = os.getpid()

    def write(self, data: bytes) -> str:
        """Store ``data`` durably as one new message; return its Maildir file name."""
        name = f"{time.time_ns()}.P{self._pid}Q{next(self._serial)}.{HOSTNAME}"
        tmp_path = self.maildir / "tmp" / name
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        new_dir = self.maildir / "new"
        os.rename(tmp_path, new_dir / name)
        if self.fsync:
            dir_fd = os.open(new_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return name


@implementer(smtp.IMessage)
class MaildirMessage:
    """Collects the lines of one message and writes them when the final dot arrives."""

    def __init__(self, writer: MaildirWriter) -> None:
        """Buffer lines for ``writer``."""
        self.writer = writer
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        """Keep one (already dot-unstuffed) line of the message."""
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[str]:
        """Write the message durably; the 250 reply follows this Deferred."""
        self.lines.append(b"")
        data = b"\n".join(self.lines)
        self.lines = []
        return defer.succeed(self.writer.write(data))

    def connectionLost(self) -> None:
        """Drop a message the client abandoned."""
        self.lines = []


@implementer(smtp.IMessageDelivery)
class AcceptAll:
    """Accepts every sender and every recipient into one Maildir."""

    def __init__(self, writer: MaildirWriter) -> None:
        """Deliver everything through ``writer``."""
        self.writer = writer

    def receivedHeader(self, helo: tuple[bytes, bytes], origin: smtp.Address, recipients) -> bytes:
        """A short Received header, as any MTA adds."""
        return b"Received: from %s ([%s]) by %s; %s" % (
            helo[0] or b"unknown",
            helo[1] if isinstance(helo[1], bytes) else str(helo[1]).encode(),
            HOSTNAME.encode(),
            smtp.rfc822date(),
        )

    def validateFrom(self, helo: tuple[bytes, bytes], origin: smtp.Address) -> smtp.Address:
        """Accept any sender."""
        return origin

    def validateTo(self, user: smtp.User):
        """Accept any recipient; each gets a fresh message object."""
        return lambda: MaildirMessage(self.writer)


class FloorFactory(smtp.SMTPFactory):
    """An ESMTP factory handing one shared delivery object to every connection."""

    protocol = smtp.ESMTP
    domain = HOSTNAME
    noisy = False

    def __init__(self, delivery: AcceptAll) -> None:
        """Serve ``delivery`` on every connection."""
        super().__init__()
        self.delivery = delivery

    def buildProtocol(self, addr):
        """An ESMTP protocol wired to the shared delivery object."""
        proto = super().buildProtocol(addr)
        proto.delivery = self.delivery
        proto.noisy = False
        return proto


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the Twisted floor server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    parser.add_argument("--maildir", type=Path, required=True, help="Maildir to write into")
    parser.add_argument(
        "--no-fsync", dest="fsync", action="store_false", help="skip both fsyncs (not durable)"
    )
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error(f"--host must be a loopback address, not {args.host}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Listen on the loopback port and serve until SIGTERM/SIGINT."""
    args = parse_args(argv)
    from twisted.internet import reactor

    writer = MaildirWriter(args.maildir, fsync=args.fsync)
    port = reactor.listenTCP(args.port, FloorFactory(AcceptAll(writer)), interface=args.host)
    address = port.getHost()
    print(f"twisted-floor listening on {address.host}:{address.port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
