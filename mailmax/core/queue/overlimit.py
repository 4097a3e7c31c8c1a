"""Over-limit notices: tell a user once when a delivery leaves their mailbox nearly full.

A domain's ``over_limit_notice`` is ``none`` (off), ``percent`` or ``mb``; its
``over_limit_threshold`` is the percent or MB of the user's disk limit left below which the
notice goes. One notice per crossing: a marker file in the Maildir root records that it went,
and it is removed (the notice re-armed) once a delivery finds more room left than the threshold.
The notice is an ordinary message from the null sender, queued for the user.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mailmax.core.directory.api import Domain, User
from mailmax.core.store import maildir

MIB = 1024 * 1024
#: The file in the Maildir root that says the notice for the current crossing went out.
MARKER = "mailmax_overlimit"


@dataclass(frozen=True)
class Notice:
    """A notice due: whose mailbox, how many bytes it uses and its limit."""

    mailbox: str
    usage: int
    limit: int


def watched(user: User | None, domain: Domain | None) -> bool:
    """True when the user's domain asks for notices and the user has a disk limit."""
    if user is None or domain is None or domain.over_limit_notice not in ("percent", "mb"):
        return False
    return domain.over_limit_threshold > 0 and limit_of(user, domain) > 0


def limit_of(user: User, domain: Domain) -> int:
    """The user's disk limit in bytes (0: none)."""
    return max(user.disk_limit_mb or domain.default_box_mb, 0) * MIB


def under_threshold(domain: Domain, usage: int, limit: int) -> bool:
    """True when the room left in a box of ``limit`` bytes using ``usage`` is under the
    domain's threshold."""
    left = max(limit - usage, 0)
    if domain.over_limit_notice == "percent":
        return left * 100 < domain.over_limit_threshold * limit
    return left < domain.over_limit_threshold * MIB


def check(user: User, domain: Domain, root: str | Path) -> Notice | None:
    """After a delivery: the notice now due for the mailbox at ``root``, or None (blocking).

    Marks the crossing (so the next delivery sends none) or re-arms it when there is room.
    """
    limit = limit_of(user, domain)
    usage = maildir.usage_bytes(Path(root))
    marker = Path(root) / MARKER
    if not under_threshold(domain, usage, limit):
        marker.unlink(missing_ok=True)
        return None
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None  # already told for this crossing
    os.close(fd)
    return Notice(user.address, usage, limit)


def message(notice: Notice, hostname: str) -> bytes:
    """The notice to the user, as bytes ready to queue."""
    used_mb, limit_mb = notice.usage / MIB, notice.limit / MIB
    left_mb = max(notice.limit - notice.usage, 0) / MIB
    percent = 100 * notice.usage // notice.limit if notice.limit else 100
    mail = email.message.EmailMessage(policy=email.policy.SMTP)
    domain = notice.mailbox.rpartition("@")[2]
    mail["From"] = email.utils.formataddr(("Mail system", f"postmaster@{domain}"))
    mail["To"] = notice.mailbox
    mail["Subject"] = f"Your mailbox is {percent}% full"
    mail["Date"] = email.utils.formatdate(time.time(), localtime=True)
    mail["Message-ID"] = email.utils.make_msgid(domain=hostname)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(
        f"Your mailbox {notice.mailbox} uses {used_mb:.1f} MB of its {limit_mb:.1f} MB limit "
        f"({left_mb:.1f} MB left).\n\n"
        "Please delete messages you no longer need (and empty the Trash). When the mailbox is "
        "full, new mail for you waits on the server and is returned to its senders if it "
        "cannot be delivered in time.\n"
    )
    return mail.as_bytes()
