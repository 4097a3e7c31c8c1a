"""Authenticated-state commands: folders, subscriptions, STATUS, APPEND, quota, namespaces.

Folder names arrive in modified UTF-7 (8-bit UTF-8 names are accepted too) and go to the
store with ``/`` between levels. APPEND's size and the user's quota are checked when the
message literal is announced, before the ``+`` continuation (:meth:`check_append`), and again
when it has arrived. The quota is the user's ``disk_limit_mb`` or the domain's
``default_box_mb`` (0 = none); usage comes from the mailbox's ``maildirsize`` file.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmax.core.imap import listing, mutf7, parser, wire
from mailmax.core.imap.base import SessionBase
from mailmax.core.imap.errors import Bad, No
from mailmax.core.store import maildir, quota
from mailmax.core.store.errors import (
    BadFlag,
    BadFolderName,
    FolderExists,
    FolderNotFound,
    StoreError,
    TooManyKeywords,
)
from mailmax.core.store.files import make_dirs
from mailmax.core.store.names import folder_parts, is_inbox

if TYPE_CHECKING:
    from mailmax.core.store.folder import Folder
    from mailmax.core.store.mailbox import MailStore
    from mailmax.core.store.openfolders import OpenFolders

MIB = 1024 * 1024
_STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")


def _create(store: MailStore, name: str) -> None:
    for parent in listing.ancestors(name):
        if not store.exists(parent):
            with contextlib.suppress(FolderExists):
                store.create_folder(parent)
    store.create_folder(name)


def _rename(store: MailStore, root: Path, old: str, new: str) -> None:
    if not is_inbox(old) and not store.exists(old):
        raise FolderNotFound(old)
    for parent in listing.ancestors(new):
        if not store.exists(parent):
            with contextlib.suppress(FolderExists):
                store.create_folder(parent)
    store.rename_folder(old, new)
    if not is_inbox(old):
        listing.rename_subscriptions(root, old, new)


def _status(store: MailStore, name: str) -> tuple[dict[str, int], Folder]:
    """The STATUS facts and the folder, still open (the caller closes it)."""
    folder = store.open(name)
    try:
        facts = {
            "MESSAGES": len(folder),
            "RECENT": folder.recent_count(),
            "UIDNEXT": folder.uidnext,
            "UIDVALIDITY": folder.uidvalidity,
            "UNSEEN": folder.unseen(),
        }
    except BaseException:
        folder.close()
        raise
    return facts, folder


def _append(
    folders: OpenFolders,
    root: Path,
    name: str,
    data: bytes | Path,
    flags: list[str],
    when: float | None,
    size: int,
) -> tuple[int, int]:
    """Append (the folder stays open for the next command); return the UID and UIDVALIDITY."""
    with folders.use(name) as folder:
        uid = folder.append(data, flags, when)
        uidvalidity = folder.uidvalidity
    maildir.adjust_usage(root, size, 1)
    return uid, uidvalidity


class FolderCommands(SessionBase):
    """Mixin of :class:`~mailmax.core.imap.server.IMAPServer` for the authenticated state."""

    # ------------------------------------------------------------------ names
    def mailbox_name(self, value: Any, create: bool = False) -> str:
        """A mailbox argument as a store folder name; raises NO/BAD when unusable."""
        try:
            raw = parser.astring(value, "mailbox name")
        except parser.ParseError as exc:
            raise Bad(str(exc)) from None
        if raw.isascii():
            try:
                name = mutf7.decode(raw.decode("ascii"))
            except mutf7.MUTF7Error as exc:
                raise No(f"[CANNOT] Invalid mailbox name: {exc}") from None
        else:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise No("[CANNOT] Mailbox names are modified UTF-7 or UTF-8") from None
        if create:
            name = name.rstrip(listing.DELIMITER)
        name = listing.normalize_inbox(name)
        try:
            folder_parts(name)
        except BadFolderName as exc:
            raise No(f"[CANNOT] {exc}") from None
        return name

    def prepare_mailbox(self, store: MailStore, root: Path) -> None:
        """At log-in (in a thread): INBOX exists; special-use folders on the first log-in.

        INBOX is not opened here: a big unindexed INBOX is indexed by the SELECT that follows.
        """
        make_dirs(store.folder_dir("INBOX"))
        listing.first_login_setup(store, root)

    # ------------------------------------------------------------------ folders
    async def cmd_CREATE(self, tag: str, args: list) -> str:
        """CREATE mailbox (missing parents are created too)."""
        if len(args) != 1:
            raise Bad("Syntax: CREATE mailbox")
        name = self.mailbox_name(args[0], create=True)
        if is_inbox(name):
            raise No("[ALREADYEXISTS] INBOX always exists")
        try:
            await self.blocking(_create, self.mailstore, name)
        except FolderExists:
            raise No("[ALREADYEXISTS] Mailbox already exists") from None
        except BadFolderName as exc:
            raise No(f"[CANNOT] {exc}") from None
        return "CREATE completed"

    async def cmd_DELETE(self, tag: str, args: list) -> str:
        """DELETE mailbox (its subfolders stay)."""
        if len(args) != 1:
            raise Bad("Syntax: DELETE mailbox")
        name = self.mailbox_name(args[0])
        if is_inbox(name):
            raise No("[CANNOT] INBOX cannot be deleted")
        selected = self.selected
        if selected is not None and selected.name == name:
            raise No("[CANNOT] Cannot delete the selected mailbox; select another one first")
        try:
            await self.blocking(self.mailstore.delete_folder, name)
        except FolderNotFound:
            raise No("[NONEXISTENT] No such mailbox") from None
        except StoreError as exc:
            raise No(f"[CANNOT] {exc}") from None
        return "DELETE completed"

    async def cmd_RENAME(self, tag: str, args: list) -> str:
        """RENAME old new (subfolders follow; renaming INBOX moves its messages)."""
        if len(args) != 2:
            raise Bad("Syntax: RENAME old new")
        old, new = self.mailbox_name(args[0]), self.mailbox_name(args[1], create=True)
        selected = self.selected
        if selected is not None and (
            selected.name == old or selected.name.startswith(old + listing.DELIMITER)
        ):
            raise No("[CANNOT] Cannot rename the selected mailbox; select another one first")
        try:
            await self.blocking(_rename, self.mailstore, self.root, old, new)
        except FolderNotFound:
            raise No("[NONEXISTENT] No such mailbox") from None
        except FolderExists:
            raise No("[ALREADYEXISTS] The new name is taken") from None
        except StoreError as exc:
            raise No(f"[CANNOT] {exc}") from None
        return "RENAME completed"

    async def cmd_SUBSCRIBE(self, tag: str, args: list, add: bool = True) -> str:
        """SUBSCRIBE mailbox."""
        if len(args) != 1:
            raise Bad("Syntax: SUBSCRIBE mailbox")
        name = self.mailbox_name(args[0])
        change = listing.change_subscriptions
        if add:
            await self.blocking(functools.partial(change, self.root, add=[name]))
            return "SUBSCRIBE completed"
        await self.blocking(functools.partial(change, self.root, remove=[name]))
        return "UNSUBSCRIBE completed"

    async def cmd_UNSUBSCRIBE(self, tag: str, args: list) -> str:
        """UNSUBSCRIBE mailbox."""
        return await self.cmd_SUBSCRIBE(tag, args, add=False)

    def _pattern(self, args: list, verb: str) -> str | None:
        if len(args) != 2 or any(isinstance(a, list) for a in args):
            raise Bad(f"Syntax: {verb} reference pattern")
        reference = parser.astring(args[0]).decode("utf-8", "replace")
        pattern = parser.astring(args[1]).decode("utf-8", "replace")
        if not pattern:
            return None
        with contextlib.suppress(mutf7.MUTF7Error):
            reference = mutf7.decode(reference) if reference.isascii() else reference
        with contextlib.suppress(mutf7.MUTF7Error):
            pattern = mutf7.decode(pattern) if pattern.isascii() else pattern
        full = reference + pattern
        if len(full) > listing.MAX_PATTERN:
            raise Bad("Pattern too long")
        return full

    async def cmd_LIST(self, tag: str, args: list) -> str:
        """LIST reference pattern (with CHILDREN and SPECIAL-USE attributes)."""
        pattern = self._pattern(args, "LIST")
        if pattern is None:
            self.send('* LIST (\\Noselect) "/" ""')
            return "LIST completed"
        names = await self.blocking(self.mailstore.folders)
        parents = listing.parent_set(names)
        known = set(names)
        for name, exists in listing.matching(names, pattern):
            attrs = " ".join(listing.attributes(name, exists, known, parents))
            self.send(b'* LIST (%s) "/" %s' % (attrs.encode(), wire.mailbox(name)))
        return "LIST completed"

    async def cmd_LSUB(self, tag: str, args: list) -> str:
        """LSUB reference pattern."""
        pattern = self._pattern(args, "LSUB")
        if pattern is None:
            self.send('* LSUB (\\Noselect) "/" ""')
            return "LSUB completed"
        names = await self.blocking(listing.read_subscriptions, self.root) or []
        for name, subscribed in listing.matching(names, pattern):
            attrs = "" if subscribed else "\\Noselect"
            self.send(b'* LSUB (%s) "/" %s' % (attrs.encode(), wire.mailbox(name)))
        return "LSUB completed"

    async def cmd_STATUS(self, tag: str, args: list) -> str:
        """STATUS mailbox (items)."""
        if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
            raise Bad("Syntax: STATUS mailbox (items)")
        wanted = []
        for item in args[1]:
            if not isinstance(item, parser.Atom) or item.upper() not in _STATUS_ITEMS:
                raise Bad("Unknown STATUS item")
            wanted.append(item.upper())
        name = self.mailbox_name(args[0])
        try:
            facts, folder = await self.blocking(_status, self.mailstore, name)
            self.close_later(folder)
        except FolderNotFound:
            raise No("[NONEXISTENT] No such mailbox") from None
        items = " ".join(f"{item} {facts[item]}" for item in wanted)
        self.send(b"* STATUS %s (%s)" % (wire.mailbox(name), items.encode()))
        return "STATUS completed"

    # ------------------------------------------------------------------ APPEND
    def append_has_mailbox(self, parts: list[Any]) -> bool:
        """True when an announced APPEND literal is the message (the mailbox came before)."""
        try:
            tag, name = parser.command_head(parts)
            trimmed = list(parts)
            trimmed[-1] = trimmed[-1].rstrip(b" ")
            start = len(tag) + len(name) + 2
            if len(trimmed) == 1 and start > len(trimmed[0]):
                return False
            return len(parser.tokenize(trimmed, start)) >= 1
        except (parser.ParseError, AttributeError):
            return False

    async def check_append(self, parts: list[Any], size: int) -> None:
        """Before the ``+``: the mailbox must exist and the message fit the quota."""
        tag, name = parser.command_head(parts)
        trimmed = list(parts)
        trimmed[-1] = trimmed[-1].rstrip(b" ")
        values = parser.tokenize(trimmed, len(tag) + len(name) + 2)
        folder = self.mailbox_name(values[0])
        exists = await self.blocking(self.mailstore.exists, folder)
        if not exists:
            raise No("[TRYCREATE] No such mailbox")
        await self.check_quota(size)

    async def cmd_APPEND(self, tag: str, args: list) -> str:
        """APPEND mailbox [(flags)] [date-time] message (UIDPLUS: APPENDUID)."""
        if not 2 <= len(args) <= 4:
            raise Bad("Syntax: APPEND mailbox [(flags)] [date-time] message")
        name = self.mailbox_name(args[0])
        message = args[-1]
        if not isinstance(message, bytes | parser.FileLiteral) or isinstance(message, parser.Atom):
            raise Bad("The message must be a literal")
        flags: list[str] = []
        when = None
        for extra in args[1:-1]:
            if isinstance(extra, list) and not flags:
                if any(not isinstance(f, parser.Atom) for f in extra):
                    raise Bad("Flags must be atoms")
                flags = [str(f) for f in extra]
            elif isinstance(extra, bytes) and when is None:
                try:
                    when = parser.parse_date_time(extra)
                except parser.ParseError as exc:
                    raise Bad(str(exc)) from None
            else:
                raise Bad("Syntax: APPEND mailbox [(flags)] [date-time] message")
        size = message.size if isinstance(message, parser.FileLiteral) else len(message)
        if size == 0:
            raise No("Cannot store an empty message")
        limit = self.settings.smtp.max_message_size
        if size > limit:
            raise No(f"[TOOBIG] Message is over the size limit of {limit} bytes")
        await self.check_quota(size)
        data = message.path if isinstance(message, parser.FileLiteral) else message
        try:
            uid, uidvalidity = await self.blocking(
                _append, self.kept_folders, self.root, name, data, flags, when, size
            )
        except FolderNotFound:
            raise No("[TRYCREATE] No such mailbox") from None
        except BadFlag as exc:
            raise Bad(str(exc)) from None
        except TooManyKeywords as exc:
            raise No(f"[LIMIT] Cannot add a keyword: {exc}") from None
        return f"[APPENDUID {uidvalidity} {uid}] APPEND completed"

    # ------------------------------------------------------------------ quota (RFC 2087)
    async def quota_limit(self) -> int:
        """The user's disk limit in bytes (0 = none), as the directory has it now."""
        user = self.account
        directory = self.directory
        fresh = await directory.get_user(user.address)
        user = fresh or user
        if user.disk_limit_mb:
            return int(user.disk_limit_mb) * MIB
        domain = await directory.get_domain(user.domain)
        return int(domain.default_box_mb) * MIB if domain is not None else 0

    async def check_quota(self, size: int) -> None:
        """Raise NO [OVERQUOTA] when ``size`` more bytes would not fit."""
        limit = await self.quota_limit()
        if not limit:
            return
        try:
            await self.blocking(quota.check_quota, self.root, size, limit)
        except quota.OverQuota as exc:
            raise No(
                f"[OVERQUOTA] Mailbox is full: {exc.usage} of {limit} bytes used, "
                f"{size} more do not fit"
            ) from None

    async def _quota_line(self) -> str | None:
        limit = await self.quota_limit()
        if not limit:
            return None
        usage = await self.blocking(maildir.usage_bytes, self.root)
        return f'* QUOTA "" (STORAGE {(usage + 1023) // 1024} {limit // 1024})'

    async def cmd_GETQUOTAROOT(self, tag: str, args: list) -> str:
        """GETQUOTAROOT mailbox: every folder shares the user's one quota root ""."""
        if len(args) != 1:
            raise Bad("Syntax: GETQUOTAROOT mailbox")
        name = self.mailbox_name(args[0])
        exists = await self.blocking(self.mailstore.exists, name)
        if not exists:
            raise No("[NONEXISTENT] No such mailbox")
        line = await self._quota_line()
        if line is None:
            self.send(b"* QUOTAROOT " + wire.mailbox(name))
        else:
            self.send(b'* QUOTAROOT %s ""' % wire.mailbox(name))
            self.send(line)
        return "GETQUOTAROOT completed"

    async def cmd_GETQUOTA(self, tag: str, args: list) -> str:
        """GETQUOTA root."""
        if len(args) != 1:
            raise Bad("Syntax: GETQUOTA root")
        if parser.astring(args[0]) != b"":
            raise No("[NONEXISTENT] No such quota root")
        line = await self._quota_line()
        if line is None:
            raise No("[NONEXISTENT] No quota is set")
        self.send(line)
        return "GETQUOTA completed"

    def cmd_SETQUOTA(self, tag: str, args: list) -> str:
        """SETQUOTA: quotas are set by the administrator."""
        raise No("[NOPERM] Quotas are set by the administrator")

    # ------------------------------------------------------------------ small ones
    def cmd_NAMESPACE(self, tag: str, args: list) -> str:
        """NAMESPACE (RFC 2342): one personal namespace."""
        if args:
            raise Bad("NAMESPACE takes no arguments")
        self.send('* NAMESPACE (("" "/")) NIL NIL')
        return "NAMESPACE completed"

    def cmd_ENABLE(self, tag: str, args: list) -> str:
        """ENABLE (RFC 5161): no extension here needs enabling."""
        if not args or any(not isinstance(a, parser.Atom) for a in args):
            raise Bad("Syntax: ENABLE capability ...")
        self.send("* ENABLED")
        return "ENABLE completed"
