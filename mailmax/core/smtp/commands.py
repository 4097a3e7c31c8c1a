"""Strict, bounded parsing of SMTP command lines and envelope addresses (RFC 5321 4.1).

Everything here is pure: bytes or text in, values or :class:`SMTPReplyError` out. The server
decides what an address *means* (local, relay, refused); this module only says what it *is*.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

#: RFC 5321 4.5.3.1: the longest local part and domain a server must accept.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
#: More ESMTP parameters than this on one MAIL/RCPT line is a syntax error.
MAX_PARAMS = 16

_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERB = re.compile(r"[A-Za-z]{1,16}\Z")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}\Z")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]{1,500}\Z")
#: Characters that route mail elsewhere when they appear in a local part (RFC 1123 5.2.16
#: "%-hack", UUCP bang paths, a quoted "@").
ROUTING_CHARACTERS = frozenset("%!@")


class SMTPReplyError(Exception):
    """A command cannot be accepted; carries the reply to send."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {status} {text}")
        self.code = code
        self.status = status
        self.text = text


class SMTPRefusal(SMTPReplyError):
    """A refusal by policy (unknown user, relay denied): not counted as a bad command."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: the verb in upper case and the rest of the line as sent."""

    verb: str
    arg: str


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox from a MAIL or RCPT path.

    ``local`` is the local part with any quoting removed; ``domain`` is lower case, in ASCII
    (A-labels), or an address literal like ``[192.0.2.1]``. ``domain`` is ``""`` only for the
    special recipient ``<postmaster>``.
    """

    local: str
    domain: str
    literal: bool = False

    @property
    def routing_hack(self) -> bool:
        """True when the local part holds ``%``, ``!`` or ``@``: a request to route onwards."""
        return any(ch in ROUTING_CHARACTERS for ch in self.local)

    @property
    def quoted_local(self) -> str:
        """The local part as it must be written in an address (quoted when needed)."""
        if _is_dot_string(self.local):
            return self.local
        escaped = self.local.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'

    def __str__(self) -> str:
        if not self.domain:
            return self.local
        return f"{self.quoted_local}@{self.domain}"


def parse_command(line: bytes) -> Command:
    """Split a command line (without its line ending) into verb and argument.

    Lines must be UTF-8 without control characters (tabs allowed); anything else is a 500.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPReplyError(500, "5.5.2", "Invalid characters in command") from None
    if _CONTROL.search(text):
        raise SMTPReplyError(500, "5.5.2", "Invalid characters in command")
    verb, _, arg = text.partition(" ")
    if not _VERB.match(verb):
        raise SMTPReplyError(500, "5.5.2", "Command unrecognized")
    return Command(verb.upper(), arg.strip(" \t"))


def parse_mail(arg: str) -> tuple[Address | None, dict[str, str]]:
    """Parse the argument of ``MAIL``: ``FROM:<path> [params]``; ``None`` is the null sender."""
    rest = _strip_keyword(arg, "FROM:", "Syntax: MAIL FROM:<address>")
    address, params = _parse_path(rest, sender=True)
    return address, params


def parse_rcpt(arg: str) -> tuple[Address, dict[str, str]]:
    """Parse the argument of ``RCPT``: ``TO:<path> [params]``."""
    rest = _strip_keyword(arg, "TO:", "Syntax: RCPT TO:<address>")
    address, params = _parse_path(rest, sender=False)
    assert address is not None
    return address, params


def parse_mailbox(text: str) -> Address:
    """Parse a bare or bracketed mailbox (the argument of VRFY)."""
    text = text.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    address, params = _parse_path(text, sender=False)
    if params or address is None:
        raise SMTPReplyError(501, "5.1.3", "Bad address syntax")
    return address


def normalize_domain(name: str) -> str:
    """``name`` lower-cased in ASCII (IDNA A-labels); ``ValueError`` when it is not a domain."""
    if not name or len(name) > MAX_DOMAIN:
        raise ValueError("bad domain length")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid international domain name: {exc}") from None
    name = name.lower()
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"bad domain label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise ValueError(f"bad A-label {label!r}: {exc}") from None
        elif label[2:4] == "--":
            raise ValueError(f"reserved label {label!r}")
    if len(name) > MAX_DOMAIN:
        raise ValueError("bad domain length")
    return name


def normalize_literal(text: str) -> str:
    """Normalize ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``; ``ValueError`` when malformed."""
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
    return f"[{ipaddress.IPv4Address(inner)}]"


# ---------------------------------------------------------------------- internals
def _is_dot_string(local: str) -> bool:
    atoms = local.split(".")
    return all(atom and all(ch in _ATEXT for ch in atom) for atom in atoms)


def _strip_keyword(arg: str, keyword: str, usage: str) -> str:
    if arg[: len(keyword)].upper() != keyword:
        raise SMTPReplyError(501, "5.5.4", usage)
    rest = arg[len(keyword) :].lstrip(" ")
    if not rest.startswith("<"):
        raise SMTPReplyError(501, "5.5.4", usage)
    return rest


def _bad(sender: bool, why: str = "") -> SMTPReplyError:
    what = "sender" if sender else "recipient"
    status = "5.1.7" if sender else "5.1.3"
    return SMTPReplyError(501, status, f"Bad {what} address syntax{': ' + why if why else ''}")


def _parse_path(text: str, sender: bool) -> tuple[Address | None, dict[str, str]]:
    """Parse ``<path> params`` where ``text`` starts with ``<``."""
    pos = 1
    end = len(text)
    if text.startswith("<>"):
        if not sender:
            raise _bad(sender, "empty address")
        return None, _parse_params(text[2:], sender)
    # Source route (RFC 5321 4.1.1.3, C): parsed for syntax and then ignored.
    if text[pos : pos + 1] == "@":
        colon = _route_end(text, pos)
        if colon < 0:
            raise _bad(sender, "bad source route")
        for hop in text[pos:colon].split(","):
            if not hop.startswith("@"):
                raise _bad(sender, "bad source route")
            try:
                _domain_or_literal(hop[1:])
            except ValueError:
                raise _bad(sender, "bad source route") from None
        pos = colon + 1
    # Local part: quoted string or dot-string.
    if text[pos : pos + 1] == '"':
        pos += 1
        chars: list[str] = []
        while True:
            if pos >= end:
                raise _bad(sender, "unterminated quoted string")
            ch = text[pos]
            if ch == "\\":
                if pos + 1 >= end or not 32 <= ord(text[pos + 1]) <= 126:
                    raise _bad(sender, "bad quoted pair")
                chars.append(text[pos + 1])
                pos += 2
                continue
            if ch == '"':
                pos += 1
                break
            if not (32 <= ord(ch) <= 126):
                if ord(ch) > 127:
                    raise _non_ascii()
                raise _bad(sender)
            chars.append(ch)
            pos += 1
        local = "".join(chars)
        if not local:
            raise _bad(sender, "empty local part")
    else:
        start = pos
        while pos < end and text[pos] not in "@>":
            pos += 1
        local = text[start:pos]
        if not local.isascii():
            raise _non_ascii()
        if not _is_dot_string(local):
            raise _bad(sender, "bad local part")
    if text[pos : pos + 1] == ">" and not sender and local.lower() == "postmaster":
        address = Address("postmaster", "")
        return address, _parse_params(text[pos + 1 :], sender)
    if text[pos : pos + 1] != "@":
        raise _bad(sender, "missing domain")
    pos += 1
    close = text.find(">", pos)
    if close < 0:
        raise _bad(sender, "missing '>'")
    try:
        domain, literal = _domain_or_literal(text[pos:close])
    except ValueError as exc:
        raise _bad(sender, str(exc) if "label" not in str(exc) else "bad domain") from None
    address = Address(local, domain, literal)
    if len(address.quoted_local) > MAX_LOCAL_PART:
        raise SMTPReplyError(501, "5.1.3" if not sender else "5.1.7", "Local part too long")
    return address, _parse_params(text[close + 1 :], sender)


def _route_end(text: str, pos: int) -> int:
    """Index of the ':' ending a source route, skipping ':' inside IPv6 literals."""
    depth = False
    for index in range(pos, min(len(text), pos + MAX_DOMAIN * 4)):
        ch = text[index]
        if ch == "[":
            depth = True
        elif ch == "]":
            depth = False
        elif ch == ":" and not depth:
            return index
        elif ch == ">":
            break
    return -1


def _domain_or_literal(text: str) -> tuple[str, bool]:
    if text.startswith("[") and text.endswith("]"):
        try:
            return normalize_literal(text), True
        except ValueError:
            raise ValueError("bad address literal") from None
    return normalize_domain(text), False


def _non_ascii() -> SMTPReplyError:
    return SMTPReplyError(553, "5.6.7", "Non-ASCII local parts need SMTPUTF8, which is not offered")


def _parse_params(text: str, sender: bool) -> dict[str, str]:
    if not text:
        return {}
    if not text.startswith(" "):
        raise _bad(sender, "junk after address")
    params: dict[str, str] = {}
    words = text.split()
    if len(words) > MAX_PARAMS:
        raise SMTPReplyError(501, "5.5.4", "Too many parameters")
    for word in words:
        keyword, eq, value = word.partition("=")
        if not _KEYWORD.match(keyword) or (eq and not _VALUE.match(value)):
            raise SMTPReplyError(501, "5.5.4", f"Bad parameter syntax: {word[:40]}")
        key = keyword.upper()
        if key in params:
            raise SMTPReplyError(501, "5.5.4", f"Duplicate parameter {key}")
        params[key] = value
    return params
