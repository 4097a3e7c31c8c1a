"""The mailbox disk limit as the sessions check it: does one more message fit?

Usage comes from the Maildir++ ``maildirsize`` cache (:func:`maildir.usage_bytes`); a message is
never refused on a cached figure alone: before saying no, the files are counted exactly.
"""

from __future__ import annotations

from pathlib import Path

from mailmax.core.store import maildir
from mailmax.core.store.maildir import OverQuota

__all__ = ["OverQuota", "check_quota"]


def check_quota(root: Path, size: int, quota_bytes: int) -> int:
    """Raise :class:`OverQuota` when ``size`` more bytes do not fit in the mailbox at ``root``.

    ``quota_bytes`` of 0 or less means no limit. Returns the bytes in use (0 without a limit,
    where nothing is counted). Blocking: reads the Maildir.
    """
    if quota_bytes <= 0:
        return 0
    usage = maildir.usage_bytes(root)
    if usage + size > quota_bytes:
        usage = maildir.usage_bytes(root, exact=True)
        if usage + size > quota_bytes:
            raise OverQuota(usage, size, quota_bytes)
    return usage
