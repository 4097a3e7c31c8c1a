"""What the command mixins (auth, folders, selected) may use of a session.

:class:`~mailmax.core.imap.server.IMAPServer` provides all of it; the mixins inherit from
:class:`SessionBase` so that each module states, and type-checks against, the same contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

if TYPE_CHECKING:
    from mailmax.core.config import ListenerSettings, Settings
    from mailmax.core.directory.api import User
    from mailmax.core.directory.cached import AsyncDirectory
    from mailmax.core.hooks import PluginSet
    from mailmax.core.imap.auth import IMAPLimits
    from mailmax.core.imap.factory import IMAPFactory
    from mailmax.core.imap.parser import CommandReader
    from mailmax.core.imap.selected import Selected
    from mailmax.core.model import Session
    from mailmax.core.store.folder import Folder
    from mailmax.core.store.mailbox import MailStore
    from mailmax.core.store.openfolders import OpenFolders

log = Logger(namespace="mailmax.imap")


class SessionBase:
    """The session state and output primitives shared by the command mixins."""

    factory: IMAPFactory
    settings: Settings
    limits: IMAPLimits
    listener: ListenerSettings
    directory: AsyncDirectory
    reactor: Any
    transport: Any
    reader: CommandReader
    #: not_auth, auth or selected
    state: str
    session: Session | None
    plugins: PluginSet | None
    user: User | None
    maildir: Path | None
    store: MailStore | None
    #: Folders kept open between commands (APPEND, COPY targets) while logged in.
    open_folders: OpenFolders | None
    selected: Selected | None
    _closing: bool

    @property
    def mailstore(self) -> MailStore:
        """The logged-in user's mailbox store."""
        assert self.store is not None, "not logged in"
        return self.store

    @property
    def kept_folders(self) -> OpenFolders:
        """The logged-in user's folders kept open between commands."""
        assert self.open_folders is not None, "not logged in"
        return self.open_folders

    @property
    def root(self) -> Path:
        """The logged-in user's Maildir++ root."""
        assert self.maildir is not None, "not logged in"
        return self.maildir

    @property
    def account(self) -> User:
        """The logged-in user."""
        assert self.user is not None, "not logged in"
        return self.user

    @property
    def tls(self) -> bool:
        """True once the connection is encrypted."""
        raise NotImplementedError

    @property
    def peer_ip(self) -> str:
        """The client's IP address."""
        raise NotImplementedError

    @property
    def session_id(self) -> str:
        """This session's id in logs."""
        raise NotImplementedError

    def send(self, line: str | bytes) -> None:
        """Write one response line."""
        raise NotImplementedError

    def tagged(self, tag: str, status: str, text: str) -> None:
        """The tagged completion of a command."""
        raise NotImplementedError

    def bye(self, text: str) -> None:
        """``* BYE text``, then close."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def start_tls(self) -> None:
        """Switch to TLS now, dropping input pipelined before it."""
        raise NotImplementedError

    def stream(self, chunks: Iterator[bytes]) -> defer.Deferred[None]:
        """Send a long response from byte chunks."""
        raise NotImplementedError

    def blocking(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run a blocking call in the store's thread pool."""
        raise NotImplementedError

    def close_later(self, folder: Folder) -> None:
        """Close a folder in the store's threads without waiting for it.

        Closing the last connection to an index checkpoints and syncs it; no reply waits
        for that.
        """
        closing = self.blocking(folder.close)
        closing.addErrback(lambda f: log.failure("cannot close folder {name}", f, name=folder.name))

    def start_work(self, work: defer.Deferred[Any] | None, tag: str) -> None:
        """Run ``work`` as the current command (input waits until it is done)."""
        raise NotImplementedError

    def capabilities(self) -> str:
        """The capability list for the current state."""
        raise NotImplementedError

    def touch(self) -> None:
        """Restart the inactivity timer."""
        raise NotImplementedError

    def mailbox_name(self, value: Any, create: bool = False) -> str:
        """A mailbox argument as a store folder name."""
        raise NotImplementedError

    def prepare_mailbox(self, store: MailStore, root: Path) -> None:
        """Ready a user's mailbox at log-in (blocking)."""
        raise NotImplementedError

    async def check_quota(self, size: int) -> None:
        """Fail with NO [OVERQUOTA] when ``size`` more bytes do not fit."""
        raise NotImplementedError

    async def send_updates(self, expunges: bool = True) -> None:
        """Report changes made by others to the selected mailbox."""
        raise NotImplementedError
