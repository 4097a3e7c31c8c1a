"""Password hashing (A6): argon2id hashes, verification, parameter upgrades."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory import DirectoryError, hash_password, verify_password
from mailmax.core.directory.passwords import DEFAULT_HASHER, burn_verify, needs_rehash

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_hash_is_argon2id_and_verifies() -> None:
    """A6: passwords are stored as argon2id hashes, never as the password itself."""
    stored = hash_password("correct horse", FAST)
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse", FAST)
    assert not verify_password(stored, "Correct horse", FAST)
    assert not verify_password(stored, "", FAST)


def test_default_parameters_are_the_strong_profile() -> None:
    """A6: the default hasher is argon2id with argon2-cffi's RFC 9106 low-memory profile."""
    stored = hash_password("pw")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "pw")
    assert not needs_rehash(stored, DEFAULT_HASHER)


def test_hash_with_other_parameters_needs_rehash() -> None:
    """A6: a hash made with weaker parameters is flagged for redoing."""
    assert needs_rehash(hash_password("pw", FAST), DEFAULT_HASHER)
    assert not needs_rehash(hash_password("pw", FAST), FAST)


@pytest.mark.parametrize("stored", ["", "plain", "$argon2id$garbage", "$2b$12$notargon"])
def test_bad_stored_values_never_verify(stored: str) -> None:
    """A corrupt or foreign hash is a failed log-in, not a crash."""
    assert not verify_password(stored, "plain", FAST)


@pytest.mark.parametrize(
    ("password", "message"), [("", "empty"), ("a\nb", "control"), ("x" * 1025, "longer")]
)
def test_unstorable_passwords_are_refused(password: str, message: str) -> None:
    """A6: empty, multi-line and absurdly long passwords get a clear error."""
    with pytest.raises(DirectoryError, match=message):
        hash_password(password, FAST)


def test_burn_verify_accepts_anything() -> None:
    """Unknown users cost one dummy verification, whatever the password."""
    burn_verify("whatever", FAST)
    burn_verify(None, FAST)  # type: ignore[arg-type]
