"""Mailbox transfer between nodes, for ``mailmax user move``.

A node with a ``transfer_port`` takes mailboxes over HTTPS (twisted.web): ``PUT
/mailbox/ADDRESS`` with the shared secret as bearer token and a tar archive of the user's
Maildir++ root (messages, folders, the IMAP index beside each folder) as the body. The archive
is unpacked beside the user's Maildir on this node, every file and directory synced, then put
in place with one rename; a folder already there is moved aside first, never merged or lost.
"""

from __future__ import annotations

import hmac
import http.client
import os
import ssl
import tarfile
import time
import uuid
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

from twisted.application import service
from twisted.internet import endpoints, threads
from twisted.logger import Logger
from twisted.web import resource, server

from mailmax.core.cluster.nodes import Cluster

log = Logger(namespace="mailmax.cluster")


class TransferError(Exception):
    """A mailbox could not be sent or taken."""


# ---------------------------------------------------------------------- files
def _sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root``)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(folder))


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pack(root: Path, out: IO[bytes]) -> int:
    """Write the Maildir ``root`` as an uncompressed tar to ``out``; the number of files."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|") as archive:
        if root.is_dir():
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                relative = os.path.relpath(folder, root)
                archive.add(folder, arcname=relative, recursive=False)
                for name in sorted(files):
                    if name.endswith(".lock"):
                        continue  # a session lock belongs to the node it was taken on
                    archive.add(os.path.join(folder, name), arcname=os.path.join(relative, name))
                    count += 1
    return count


def unpack(archive: IO[bytes], root: Path) -> int:
    """Put the tar ``archive`` in place as the Maildir ``root`` (see the module doc)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    incoming = root.with_name(f".{root.name}.incoming-{uuid.uuid4().hex[:8]}")
    count = 0
    try:
        incoming.mkdir()  # a mailbox that never had mail comes as an empty archive
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            for member in tar:
                tar.extract(member, incoming, filter="data")
                count += member.isfile()
        _sync_tree(incoming)
        if root.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            os.rename(root, root.with_name(f"{root.name}.replaced-{stamp}"))
        os.rename(incoming, root)
        _sync_dir(root.parent)
    except BaseException:
        import shutil

        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return count


# ---------------------------------------------------------------------- receiving
class MailboxResource(resource.Resource):
    """``PUT /mailbox/ADDRESS``: take a mailbox moved to this node."""

    isLeaf = True

    def __init__(self, cluster: Cluster, directory: Any) -> None:
        super().__init__()
        self.cluster = cluster
        self.directory = directory

    def render_PUT(self, request: Any) -> Any:
        """Check the secret, then unpack the body in a thread; 200 with the file count."""
        token = (request.getHeader("authorization") or "").removeprefix("Bearer ")
        if not hmac.compare_digest(token.encode(), self.cluster.settings.secret.encode()):
            request.setResponseCode(403)
            return b"wrong secret\n"
        parts = request.postpath
        if len(parts) != 2 or parts[0] != b"mailbox":
            request.setResponseCode(404)
            return b"PUT /mailbox/ADDRESS\n"
        address = unquote(parts[1].decode())
        d = threads.deferToThread(self._take, address, request.content)

        def done(count: int) -> None:
            request.write(f"{count}\n".encode())
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("taking the mailbox of {address} failed", failure, address=address)
            request.setResponseCode(500)
            request.write(f"{failure.getErrorMessage()}\n".encode())
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET

    def _take(self, address: str, body: IO[bytes]) -> int:
        user = self.directory.get_user(address)
        if user is None:
            raise TransferError(f"no user {address}")
        body.seek(0)
        count = unpack(body, Path(self.directory.user_maildir(user)))
        log.info("took the mailbox of {address}: {count} files", address=address, count=count)
        return count


class TransferListener(service.Service):
    """Listens on this node's ``transfer_port`` (HTTPS) for mailboxes moved here."""

    def __init__(self, mailmax: Any, cluster: Cluster) -> None:
        self.mailmax = mailmax
        self.cluster = cluster
        self.port: Any = None

    def startService(self) -> None:
        """Listen (when this node has a transfer port)."""
        super().startService()
        node = self.cluster.node(self.cluster.name)
        if not node.transfer_port:
            return
        tls = self.mailmax.peer_tls_options()
        if tls is None:
            return  # the node-to-node listener says why and stops the server
        site = server.Site(MailboxResource(self.cluster, self.mailmax.directory))
        site.noisy = False
        endpoint = endpoints.SSL4ServerEndpoint(
            self.mailmax.reactor, node.transfer_port, tls, interface=node.address
        )
        endpoint.listen(site).addCallbacks(self._listening, self._failed)

    def _listening(self, port: Any) -> None:
        self.port = port

    def _failed(self, failure: Any) -> None:
        log.critical(
            "cannot listen for mailbox transfers: {error}", error=failure.getErrorMessage()
        )
        self.mailmax.reactor.callLater(0, self.mailmax.reactor.stop)

    def stopService(self) -> Any:
        """Stop listening."""
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


# ---------------------------------------------------------------------- sending
def send_mailbox(cluster: Cluster, node: str, address: str, archive: IO[bytes], size: int) -> int:
    """PUT the tar ``archive`` of ``address``'s Maildir to ``node``; the files it took."""
    target = cluster.node(node)
    if not target.transfer_port:
        raise TransferError(
            f"node {node} has no transfer_port in [cluster.nodes.{node}]: it cannot take mailboxes"
        )
    context = ssl.create_default_context()
    ca_file = cluster.settings.tls_ca_file
    if ca_file:
        context.load_verify_locations(cafile=str(cluster.path(ca_file)))
    else:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection(
        target.address, target.transfer_port, timeout=300, context=context
    )
    try:
        connection.request(
            "PUT",
            f"/mailbox/{quote(address, safe='')}",
            body=archive,
            headers={
                "Authorization": f"Bearer {cluster.settings.secret}",
                "Content-Length": str(size),
                "Content-Type": "application/x-tar",
            },
        )
        reply = connection.getresponse()
        text = reply.read().decode(errors="replace").strip()
    except OSError as exc:
        raise TransferError(f"cannot reach node {node} ({target.address}): {exc}") from None
    finally:
        connection.close()
    if reply.status != 200:
        raise TransferError(f"node {node} refused the mailbox: {reply.status} {text}")
    return int(text or 0)
