"""``mailmax user move ADDRESS --node NODE``: move a mailbox to another node of the cluster."""

from __future__ import annotations

import dataclasses

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
    from mailmax.core.cluster.move import MoveError, move_mailbox
    from mailmax.core.cluster.transfer import TransferError

    state = app()
    try:
        report = move_mailbox(state.settings(), state.directory(), address, node)
    except (MoveError, TransferError) as exc:
        raise CLIError(f"{exc}; the mailbox stays where it was") from None
    state.out.done(
        f"moved {report.address} from node {report.from_node} to node {report.to_node} "
        f"({report.files} files; the old copy is {report.old_copy or 'gone'})",
        **dataclasses.asdict(report),
    )
