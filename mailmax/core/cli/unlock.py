"""``mailmax user unlock ADDRESS``: clear a ghost lock on a user's mailbox.

A POP3 session locks its mailbox; a crashed server's lock is stale and taken over by the next
login on its own, but a session hung inside a running server keeps it. This command removes
the lock so the user can log in again.
"""

from __future__ import annotations

import click

from mailmax.core.cli.context import app, common_options
from mailmax.core.cli.users import find_user
from mailmax.core.services import users as service
from mailmax.core.services.actor import Actor


@click.command("unlock")
@click.argument("address")
@common_options
def unlock_command(address: str) -> None:
    """Remove the POP3 lock on the mailbox of the user ADDRESS."""
    state = app()
    user = find_user(address)
    message, details = service.unlock_mailbox(state.directory(), Actor.local(), user.address)
    state.out.done(message, changed=details["unlocked"], **details)
