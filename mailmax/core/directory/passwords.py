"""Password hashing: argon2id for every stored password.

A user's password is always stored as an argon2id hash, and log-ins are always checked against
that hash. When the admin chooses to keep clear text for a user (APOP and CRAM-MD5 need the
password itself), a clear copy is stored *beside* the hash; it is only ever read back for those
challenge-response mechanisms. Passwords are never logged.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailmax.core.directory.errors import DirectoryError

MAX_PASSWORD = 1024

#: argon2id with argon2-cffi's defaults (the RFC 9106 low-memory profile).
DEFAULT_HASHER = PasswordHasher()


def check_password(password: str) -> str:
    """Return ``password`` if it can be stored, else raise DirectoryError saying why."""
    if not isinstance(password, str) or not password:
        raise DirectoryError("the password is empty; give a password or none for a blank one")
    if len(password) > MAX_PASSWORD:
        raise DirectoryError(f"the password is longer than {MAX_PASSWORD} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise DirectoryError("the password contains control characters (such as a line break)")
    return password


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """The argon2id hash (PHC string) of ``password``."""
    return hasher.hash(check_password(password))


def verify_password(stored: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True when ``password`` matches the stored hash; False for a mismatch or a bad hash."""
    if not stored or not isinstance(password, str):
        return False
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True when ``stored`` was made with parameters other than ``hasher``'s: redo it."""
    try:
        return hasher.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


#: A hash of a random password made by :data:`DEFAULT_HASHER`: verifying against it costs what
#: verifying a user's password costs, and the first unknown user pays no hash of its own.
_DEFAULT_DUMMY = (
    "$argon2id$v=19$m=65536,t=3,p=4$JCrnnFVZs2TGHF6egAlzsg"
    "$U9ndE5oMdJhQiuVxB8iSlYcGHaySPuu5tKQbv+QXkr0"
)


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    if not needs_rehash(_DEFAULT_DUMMY, hasher):
        return _DEFAULT_DUMMY
    return hasher.hash("mailmax-no-such-user")


def burn_verify(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Spend the time of one verification, so an unknown user takes as long as a known one."""
    verify_password(_dummy_hash(hasher), password if isinstance(password, str) else "", hasher)
