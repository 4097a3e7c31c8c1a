"""Moving a mailbox to another node (``mailmax user move ADDRESS --node NODE``).

Run on the node that holds the mailbox:

1. mark the user ``moving``: every node keeps new mail for the user in its queue (deliveries
   are deferred, not refused) and POP3/IMAP log-ins get a temporary error;
2. wait until every node's directory cache has seen the mark;
3. send the Maildir (messages, folders, IMAP indexes) to the new node, which syncs it to disk
   and puts it in place (:mod:`.transfer`);
4. switch the home node and clear the mark in one update: the queued mail flows to the new
   node from then on;
5. rename the old copy aside (``NAME.moved-NODE-DATE``), never delete it.

When a step before the switch fails, the mark is cleared and the mailbox stays where it was.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmax.core.cluster.nodes import Cluster
from mailmax.core.cluster.transfer import pack, send_mailbox
from mailmax.core.config import Settings
from mailmax.core.directory.api import DomainType


class MoveError(Exception):
    """The mailbox cannot be moved (the message says why); nothing was changed."""


@dataclass(frozen=True)
class MoveReport:
    """What a move did."""

    address: str
    from_node: str
    to_node: str
    files: int
    old_copy: str


def settle_seconds(settings: Settings) -> float:
    """How long a change takes to reach every node's caches (with a margin)."""
    return max(settings.server.directory_cache_seconds, 1.0) + 1.0


def move_mailbox(
    settings: Settings,
    directory: Any,
    address: str,
    node: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> MoveReport:
    """Move ``address``'s mailbox from this node to ``node`` (see the module doc)."""
    cluster = Cluster.from_settings(settings)
    if cluster is None:
        raise MoveError(
            "no cluster is configured: this server is not a node of a cluster "
            "([cluster] node is not set)"
        )
    if node not in cluster.settings.nodes:
        known = ", ".join(sorted(cluster.settings.nodes))
        raise MoveError(f"no node {node!r} in [cluster.nodes] (the nodes are: {known})")
    user = directory.get_user(address)
    if user is None:
        raise MoveError(f"no user {address!r}")
    domain = directory.get_domain(user.domain)
    if domain is None or domain.type is not DomainType.CLUSTERED:
        raise MoveError(f"{user.address} is not in a clustered domain: it has no home node")
    home = cluster.home_of(user, domain)
    if home == node and not user.moving:
        raise MoveError(f"the mailbox of {user.address} is on node {node} already")
    if home != cluster.name:
        raise MoveError(f"the mailbox of {user.address} is on node {home}: run this command there")
    directory.edit_user(user.address, moving=True)
    try:
        sleep(settle_seconds(settings))
        root = Path(directory.user_maildir(user))
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root.parent) as archive:
            files = pack(root, archive)
            size = archive.tell()
            archive.seek(0)
            taken = send_mailbox(cluster, node, user.address, archive, size)
        if taken != files:
            raise MoveError(f"node {node} took {taken} of {files} files; the move is undone")
    except BaseException:
        directory.edit_user(user.address, moving=False)
        raise
    directory.edit_user(user.address, home_node=node, moving=False)
    old_copy = ""
    if root.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        aside = root.with_name(f"{root.name}.moved-{node}-{stamp}")
        root.rename(aside)
        old_copy = str(aside)
    return MoveReport(user.address, home, node, files, old_copy)
