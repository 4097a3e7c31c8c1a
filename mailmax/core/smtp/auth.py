"""SASL mechanisms for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195).

Each mechanism is a small state machine with no I/O: it turns the client's decoded responses
into either the next challenge (bytes, sent base64-encoded in a ``334`` reply) or the
:class:`Credentials` to check. Checking them against the directory is the server's job.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import time
from dataclasses import dataclass

from mailmax.core.smtp.commands import SMTPReplyError

#: Longest login name accepted from a client.
MAX_LOGIN = 320
#: Longest password accepted from a client.
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client proved or claimed: a login and a password, or a CRAM-MD5 digest."""

    login: str
    password: str | None = None
    challenge: bytes | None = None
    digest: str | None = None

    def __repr__(self) -> str:
        kind = "CRAM-MD5" if self.digest else "password"
        return f"Credentials(login={self.login!r}, mechanism={kind})"

    def verify_cram(self, secret: str) -> bool:
        """True when ``digest`` is HMAC-MD5 of the challenge keyed with ``secret``."""
        if self.challenge is None or self.digest is None:
            return False
        expected = hmac.new(secret.encode("utf-8"), self.challenge, "md5").hexdigest()
        return hmac.compare_digest(expected, self.digest)


Step = bytes | Credentials


def malformed(why: str = "Malformed authentication response") -> SMTPReplyError:
    """The 501 reply for a response that cannot be decoded."""
    return SMTPReplyError(501, "5.5.2", why)


def decode_response(line: bytes) -> bytes:
    """Decode one client response line; ``*`` cancels the exchange (501 5.7.0)."""
    line = line.strip()
    if line == b"*":
        raise SMTPReplyError(501, "5.7.0", "Authentication cancelled")
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise malformed("Invalid base64 data") from None


def encode_challenge(challenge: bytes) -> bytes:
    """The ``334`` reply line for ``challenge``."""
    return b"334 " + base64.b64encode(challenge)


def _text(value: bytes, limit: int) -> str:
    if len(value) > limit:
        raise malformed("Authentication data too long")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("Authentication data is not UTF-8") from None
    if any(ord(ch) < 32 for ch in text):
        raise malformed("Control characters in authentication data")
    return text


class Mechanism:
    """Base class: :meth:`start` with the optional initial response, then :meth:`step`."""

    name = ""

    def start(self, initial: bytes | None) -> Step:
        """Begin; ``initial`` is the decoded initial response, if the client sent one."""
        raise NotImplementedError

    def step(self, response: bytes) -> Step:
        """Take the next decoded response."""
        raise NotImplementedError


class Plain(Mechanism):
    """PLAIN: ``authzid NUL authcid NUL passwd`` in one message."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        """Use the initial response, or ask for it with an empty challenge."""
        return b"" if initial is None else self.step(initial)

    def step(self, response: bytes) -> Step:
        """Parse the PLAIN message; proxy authorization (authzid != authcid) is refused."""
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise malformed("Malformed PLAIN response")
        authzid, login, password = (
            _text(parts[0], MAX_LOGIN),
            _text(parts[1], MAX_LOGIN),
            _text(parts[2], MAX_PASSWORD),
        )
        if not login or (authzid and authzid != login):
            raise SMTPReplyError(535, "5.7.8", "Authentication credentials invalid")
        return Credentials(login, password=password)


class Login(Mechanism):
    """LOGIN: the user name, then the password, each after its own prompt."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._login: str | None = None

    def start(self, initial: bytes | None) -> Step:
        """Prompt for the user name, or take it from the initial response."""
        return b"Username:" if initial is None else self.step(initial)

    def step(self, response: bytes) -> Step:
        """Take the user name, then the password."""
        if self._login is None:
            self._login = _text(response, MAX_LOGIN)
            if not self._login:
                raise SMTPReplyError(535, "5.7.8", "Authentication credentials invalid")
            return b"Password:"
        return Credentials(self._login, password=_text(response, MAX_PASSWORD))


class CramMD5(Mechanism):
    """CRAM-MD5: a one-time challenge, answered by ``user hex(HMAC-MD5(password, challenge))``."""

    name = "CRAM-MD5"

    def __init__(self, hostname: str) -> None:
        self.challenge = (
            f"<{int.from_bytes(os.urandom(8), 'big')}.{int(time.time())}@{hostname}>".encode()
        )

    def start(self, initial: bytes | None) -> Step:
        """Send the challenge; CRAM-MD5 has no initial response."""
        if initial is not None:
            raise malformed("CRAM-MD5 takes no initial response")
        return self.challenge

    def step(self, response: bytes) -> Step:
        """Parse ``user digest``."""
        text = _text(response, MAX_LOGIN + 40)
        login, _, digest = text.rpartition(" ")
        digest = digest.lower()
        if not login or len(digest) != 32 or any(ch not in "0123456789abcdef" for ch in digest):
            raise malformed("Malformed CRAM-MD5 response")
        return Credentials(login, challenge=self.challenge, digest=digest)


def make_mechanism(name: str, hostname: str) -> Mechanism | None:
    """A fresh mechanism for ``name`` (upper case), or ``None`` when it is not supported."""
    if name == "PLAIN":
        return Plain()
    if name == "LOGIN":
        return Login()
    if name == "CRAM-MD5":
        return CramMD5(hostname)
    return None
