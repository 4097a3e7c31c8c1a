"""A full mailbox as SMTP sees it: a temporary condition (``452 4.2.2``), never a bounce.

At RCPT, when MAIL gave ``SIZE=``, a recipient whose mailbox cannot take that many more bytes
is answered ``452 4.2.2`` (the client tries it again later). At the end of DATA the message is
refused (``452 4.2.2``) only when it fits the mailbox of none of its recipients; otherwise it is
accepted, and the copy for a full mailbox waits in the queue and is retried (the box may be
emptied meanwhile) until the queue's lifetime for it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailmax.core.directory.api import RecipientLookup
from mailmax.core.store.quota import OverQuota, check_quota

MIB = 1024 * 1024


def limit_of(lookup: RecipientLookup | None) -> int:
    """The disk limit in bytes of the mailbox a RCPT delivers to; 0 for none (or no box)."""
    if lookup is None or lookup.user is None or lookup.domain is None:
        return 0
    return max(lookup.user.disk_limit_mb or lookup.domain.default_box_mb, 0) * MIB


def is_full(directory: Any, lookup: RecipientLookup, size: int) -> bool:
    """True when ``size`` more bytes do not fit in the recipient's mailbox.

    Blocking: ``directory`` is the SQL directory (it finds the Maildir, which is read).
    """
    limit = limit_of(lookup)
    if not limit or lookup.user is None:
        return False
    try:
        check_quota(Path(directory.user_maildir(lookup.user)), size, limit)
    except OverQuota:
        return True
    return False


def all_full(directory: Any, lookups: Sequence[RecipientLookup | None], size: int) -> bool:
    """True when every recipient has a limited mailbox and none can take ``size`` bytes
    (blocking, like :func:`is_full`)."""
    return bool(lookups) and all(
        lookup is not None and is_full(directory, lookup, size) for lookup in lookups
    )
