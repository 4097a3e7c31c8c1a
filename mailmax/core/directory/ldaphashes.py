"""Checking a password against a hashed LDAP password attribute (RFC 2307 schemes).

For LDAP sources with ``auth = "compare"``: the service account reads the user's hashed
attribute and MailMax checks the password against it. Supported: ``{SSHA}``, ``{SHA}``,
``{SSHA256}``, ``{SHA256}``, ``{SSHA512}``, ``{SHA512}`` (hashlib) and argon2 (``{ARGON2}``
or a bare ``$argon2...`` string, through argon2-cffi). Clear-text values are never accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: scheme -> (hashlib name, salted)
_DIGESTS = {
    "SHA": ("sha1", False),
    "SSHA": ("sha1", True),
    "SHA256": ("sha256", False),
    "SSHA256": ("sha256", True),
    "SHA512": ("sha512", False),
    "SSHA512": ("sha512", True),
}
_ARGON2 = PasswordHasher()


def scheme_of(stored: str) -> str:
    """The scheme of a stored value (``SSHA``, ``ARGON2``...), or ``""`` when it has none."""
    if stored.startswith("$argon2"):
        return "ARGON2"
    if stored.startswith("{") and "}" in stored:
        return stored[1 : stored.index("}")].upper()
    return ""


def supported(stored: str) -> bool:
    """True when :func:`verify` can check a password against ``stored``."""
    return scheme_of(stored) in _DIGESTS or scheme_of(stored) == "ARGON2"


def verify(stored: str, password: str) -> bool:
    """True when ``password`` matches the hashed value ``stored``; False for anything else."""
    scheme = scheme_of(stored)
    if scheme == "ARGON2":
        encoded = stored if stored.startswith("$") else stored[stored.index("}") + 1 :]
        try:
            return _ARGON2.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False
    if scheme not in _DIGESTS:
        return False
    name, salted = _DIGESTS[scheme]
    try:
        raw = base64.b64decode(stored[stored.index("}") + 1 :], validate=True)
    except (binascii.Error, ValueError):
        return False
    size = hashlib.new(name).digest_size
    digest, salt = raw[:size], raw[size:]
    if len(digest) != size or (salted and not salt) or (not salted and salt):
        return False
    computed = hashlib.new(name, password.encode("utf-8") + salt).digest()
    return hmac.compare_digest(computed, digest)
