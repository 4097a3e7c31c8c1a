"""``mailmax user move ADDRESS --node NODE``: move a mailbox to another node of the cluster."""

from __future__ import annotations

import click

from mailmax.core.cli.context import CLIError, app, common_options


@click.command("move")
@click.argument("address")
@click.option("--node", required=True, metavar="NODE", help="The node the mailbox goes to.")
@common_options
def move_command(address: str, node: str) -> None:
    """Move the mailbox of ADDRESS (a clustered domain's user) to NODE.

    Run it on the node that holds the mailbox. Mail arriving meanwhile waits in the nodes'
    queues and is delivered on NODE afterwards; log-ins get a temporary error until the move
    is done. The old copy is renamed aside, not deleted.
    """
    from mailmax.core.services.actor import Actor
    from mailmax.core.services.usermove import MoveRefused, move_user

    state = app()
    try:
        message, report = move_user(state.settings(), state.directory(), Actor.local(), address,
                                    node)  # fmt: skip
    except MoveRefused as exc:
        raise CLIError(str(exc)) from None
    state.out.done(message, **report)
