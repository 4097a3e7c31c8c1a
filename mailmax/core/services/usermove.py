"""Moving a user's mailbox to another node of the cluster (the CLI, the API, the web admin)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailmax.core.cluster.nodes import Cluster
from mailmax.core.directory.errors import DirectoryError
from mailmax.core.services.actor import Actor, audit

if TYPE_CHECKING:
    from mailmax.core.config import Settings
    from mailmax.core.directory.sql import SQLDirectory


class MoveRefused(DirectoryError):
    """The mailbox was not moved (the message says why); it stays where it was."""


def cluster_nodes(settings: Settings) -> list[str]:
    """The names of the cluster's nodes; empty when this server is not a node of a cluster."""
    cluster = Cluster.from_settings(settings)
    return sorted(cluster.settings.nodes) if cluster is not None else []


def move_user(
    settings: Settings,
    directory: SQLDirectory,
    actor: Actor,
    address: str,
    node: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, dict[str, Any]]:
    """Move the mailbox of ``address`` from this node to ``node``: (the sentence, the report).

    System administrators only. Blocks until the mailbox is on ``node`` (at least the time a
    change takes to reach every node's directory cache)."""
    from mailmax.core.cluster.move import MoveError, move_mailbox
    from mailmax.core.cluster.transfer import TransferError

    actor.require_system("a mailbox move")
    try:
        report = move_mailbox(settings, directory, address, node, sleep=sleep)
    except (MoveError, TransferError) as exc:
        raise MoveRefused(f"{exc}; the mailbox stays where it was") from None
    details = dataclasses.asdict(report)
    audit(directory, actor, "user.move", report.address, from_node=report.from_node,
          to_node=report.to_node, files=report.files)  # fmt: skip
    message = (
        f"moved {report.address} from node {report.from_node} to node {report.to_node} "
        f"({report.files} files; the old copy is {report.old_copy or 'gone'})"
    )
    return message, details
