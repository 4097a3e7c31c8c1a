"""``mailmax user unlock ADDRESS``: clear a ghost lock on a user's mailbox.

A POP3 session locks its mailbox; a crashed server's lock is stale and taken over by the next
login on its own, but a session hung inside a running server keeps it. This command removes
the lock so the user can log in again.
"""

from __future__ import annotations

import click

from mailmax.core.cli.context import app, common_options
from mailmax.core.cli.users import find_user
from mailmax.core.store.lock import clear_lock, holder, is_stale


@click.command("unlock")
@click.argument("address")
@common_options
def unlock_command(address: str) -> None:
    """Remove the POP3 lock on the mailbox of the user ADDRESS."""
    state = app()
    user = find_user(address)
    root = state.directory().user_maildir(user)
    live = holder(root)
    info = clear_lock(root)
    if info is None:
        state.out.done(
            f"the mailbox of {user.address} was not locked",
            changed=False,
            address=user.address,
            unlocked=False,
        )
        return
    if live is None or is_stale(info):
        how = f"a stale lock ({info.describe()}, no longer running)"
    else:
        how = (
            f"the lock of a {info.describe()}; that session keeps running but no longer "
            "keeps other sessions out"
        )
    state.out.done(
        f"unlocked the mailbox of {user.address}: removed {how}",
        address=user.address,
        unlocked=True,
        pid=info.pid,
        host=info.host,
        since=info.since,
        stale=live is None,
    )
