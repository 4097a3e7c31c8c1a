"""Selected-state commands on sets of messages: FETCH, STORE, SEARCH, COPY/MOVE and UID.

Each names messages by a sequence set (or a UID set under ``UID``) resolved against the
session's view of the selected folder (:meth:`SelectedCommands.indices`). FETCH answers from
the index alone when every item it asks for is there; otherwise it opens each message file as
it streams the reply. Messages another session has expunged meanwhile are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from mailmax.core.imap import fetch, numbers, parser, wire
from mailmax.core.imap.errors import Bad, No
from mailmax.core.imap.search import (
    BadCharset,
    Candidate,
    Query,
    esearch_reply,
    flag_matches,
    return_options,
    search_flags,
    search_reply,
)
from mailmax.core.imap.selected import RECENT, SelectedCommands
from mailmax.core.store import maildir
from mailmax.core.store.errors import (
    BadFlag,
    BadFolderName,
    FolderNotFound,
    MessageGone,
    TooManyKeywords,
)

if TYPE_CHECKING:
    from mailmax.core.store.folder import Folder, MessageInfo
    from mailmax.core.store.openfolders import OpenFolders

log = Logger(namespace="mailmax.imap")

#: Largest view a SEARCH on flags only runs through in the reactor: a few milliseconds of
#: work, less than handing it to a thread and back; larger views are searched in a thread.
INLINE_FLAG_SEARCH = 200_000
#: FETCH responses answered from the index that are joined before they go to the stream.
META_BATCH = 256


def _copy(folders: OpenFolders, folder: Folder, uids: list[int], name: str) -> tuple[list, int]:
    """Copy (the target stays open for the next command); return the UID pairs and the
    target's UIDVALIDITY."""
    with folders.use(name) as target:
        return folder.copy(uids, target), target.uidvalidity


class MessageCommands(SelectedCommands):
    """Mixin of :class:`~mailmax.core.imap.server.IMAPServer` for the selected messages."""

    # ------------------------------------------------------------------ UID
    async def cmd_UID(self, tag: str, args: list) -> str | None:
        """UID FETCH/SEARCH/STORE/COPY/MOVE/EXPUNGE."""
        if not args or not isinstance(args[0], parser.Atom):
            raise Bad("Syntax: UID command arguments")
        sub, rest = args[0].upper(), args[1:]
        if sub == "FETCH":
            return await self.cmd_FETCH(tag, rest, uid=True)
        if sub == "SEARCH":
            return await self.cmd_SEARCH(tag, rest, uid=True)
        if sub == "STORE":
            return await self.cmd_STORE(tag, rest, uid=True)
        if sub == "COPY":
            return await self.cmd_COPY(tag, rest, uid=True)
        if sub == "MOVE":
            return await self.cmd_MOVE(tag, rest, uid=True)
        if sub == "EXPUNGE":
            if len(rest) != 1:
                raise Bad("Syntax: UID EXPUNGE set")
            return await self.cmd_EXPUNGE(tag, [], uid_set=rest[0])
        raise Bad("Unknown UID command")

    # ------------------------------------------------------------------ FETCH
    async def cmd_FETCH(self, tag: str, args: list, uid: bool = False) -> str | None:
        """FETCH set items."""
        if len(args) != 2:
            raise Bad("Syntax: FETCH set items")
        try:
            items = fetch.parse_items(args[1])
        except parser.ParseError as exc:
            raise Bad(str(exc)) from None
        if uid and not any(item.name == "UID" for item in items):
            items.insert(0, fetch.Item("UID"))
        selected = self.selected
        assert selected is not None
        view = await self.view()
        positions = self.indices(view, args[0], uid)
        seen: set[int] = set()
        if not selected.readonly and any(item.sets_seen for item in items):
            unseen = [
                view[i].uid for i in positions if "\\Seen" not in view[i].flags and view[i].filename
            ]
            if unseen:
                changed = await self.blocking(selected.folder.set_flags, unseen, ["\\Seen"], "add")
                seen = set(changed)
                view = await self.view()
        with_flags = (
            items if any(i.name == "FLAGS" for i in items) else [*items, fetch.Item("FLAGS")]
        )
        meta = all(item.name in fetch.META for item in with_flags)
        gone: list[int] = []
        folder = selected.folder
        folder_dir = str(folder.dir)
        flags_of = self.flags_of

        shows_flags = len(with_flags) == len(items)
        known = selected.known_flags

        def announce(flags: frozenset[str]) -> bytes:
            if flags <= known:
                return b""
            return b"".join(f"{line}\r\n".encode() for line in self.new_keyword_lines(flags))

        def answers() -> Any:
            render = fetch.meta_renderer(items)
            render_seen = fetch.meta_renderer(with_flags) if seen else render
            recent = selected.recent
            batch: list[bytes] = []
            for position in positions:
                info = view[position]
                if not info.filename:
                    gone.append(info.uid)
                    continue
                uid = info.uid
                flags = info.flags | RECENT if uid in recent else info.flags
                if shows_flags or uid in seen:
                    batch.append(announce(flags))
                batch.append((render_seen if uid in seen else render)(info, position + 1, flags))
                if len(batch) >= META_BATCH:
                    yield b"".join(batch)
                    batch = []
            if batch:
                yield b"".join(batch)

        def chunks() -> Any:
            for position in positions:
                info = view[position]
                wanted = with_flags if info.uid in seen else items
                if not info.filename:
                    gone.append(info.uid)
                    continue
                source = fetch.Source.of(folder, info, folder_dir)
                try:
                    try:
                        source.size  # noqa: B018 - opens the file now
                    except MessageGone:
                        gone.append(info.uid)
                        continue
                    flags = flags_of(info)
                    lines = announce(flags) if wanted is with_flags else b""
                    if lines:
                        yield lines
                    yield from fetch.answer(info, position + 1, wanted, flags, source)
                finally:
                    source.close()

        try:
            await self.stream(answers() if meta else chunks())
        except ConnectionLost:
            return None
        except Exception:  # the reply is cut off mid-way: the connection cannot go on
            log.failure("FETCH failed while sending, closing session {id}", id=self.session_id)
            self.close()
            return None
        if gone and not uid:
            raise No("[EXPUNGEISSUED] Some messages were expunged by another session")
        return "FETCH completed"

    # ------------------------------------------------------------------ STORE
    async def cmd_STORE(self, tag: str, args: list, uid: bool = False) -> str:
        """STORE set [+-]FLAGS[.SILENT] flags."""
        if len(args) < 3 or not isinstance(args[1], parser.Atom):
            raise Bad("Syntax: STORE set [+|-]FLAGS[.SILENT] (flags)")
        action = args[1].upper()
        silent = action.endswith(".SILENT")
        action = action.removesuffix(".SILENT")
        modes = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}
        if action not in modes:
            raise Bad("Syntax: STORE set [+|-]FLAGS[.SILENT] (flags)")
        raw = args[2] if len(args) == 3 and isinstance(args[2], list) else args[2:]
        if any(not isinstance(flag, parser.Atom) for flag in raw):
            raise Bad("Flags must be atoms")
        selected = self._readwrite()
        view = await self.view()
        positions = self.indices(view, args[0], uid)
        uids = [view[i].uid for i in positions if view[i].filename]
        try:
            result = await self.blocking(
                selected.folder.set_flags, uids, [str(f) for f in raw], modes[action]
            )
        except BadFlag as exc:
            raise Bad(str(exc)) from None
        except TooManyKeywords as exc:
            raise No(f"[LIMIT] Cannot add a keyword: {exc}") from None
        gone = len(result) < len(positions)
        if not silent:
            self._send_flags(await self.view(), positions, result, uid)
        if gone and not uid:
            raise No("[EXPUNGEISSUED] Some messages were expunged by another session")
        return "STORE completed"

    def _send_flags(
        self, view: Sequence[MessageInfo], positions: list[int], result: dict, uid: bool
    ) -> None:
        """STORE's ``* n FETCH (FLAGS ...)`` lines, written a few hundred at a time; new
        keywords are announced before the first line that shows them."""
        pending: list[bytes] = []
        listed_for: dict[frozenset[str], bytes] = {}
        for position in positions:
            info = view[position]
            if info.uid not in result:
                continue
            flags = self.flags_of(info)
            listed = listed_for.get(flags)
            if listed is None:
                if pending:
                    self.send(b"\r\n".join(pending))
                    pending = []
                self.send_new_keywords(flags)
                listed = listed_for[flags] = wire.flag_list(flags)
            if uid:
                pending.append(b"* %d FETCH (UID %d FLAGS %s)" % (position + 1, info.uid, listed))
            else:
                pending.append(b"* %d FETCH (FLAGS %s)" % (position + 1, listed))
            if len(pending) >= 512:
                self.send(b"\r\n".join(pending))
                pending = []
        if pending:
            self.send(b"\r\n".join(pending))

    # ------------------------------------------------------------------ SEARCH
    async def cmd_SEARCH(self, tag: str, args: list, uid: bool = False) -> str:
        """SEARCH [RETURN (options)] [CHARSET name] criteria (ESEARCH: RFC 4731)."""
        view = await self.view()
        try:
            options, args = return_options(args)
            query = Query(args, largest_seq=len(view), largest_uid=view[-1].uid if view else 0)
        except BadCharset:
            raise No("[BADCHARSET (US-ASCII UTF-8)] Unsupported charset") from None
        except parser.ParseError as exc:
            raise Bad(str(exc)) from None
        selected = self.selected
        assert selected is not None
        recent = selected.recent
        inline = query.flags_only and len(view) <= INLINE_FLAG_SEARCH
        if options is None and query.flags_only:  # the common case, kept lean
            if inline:
                text = search_flags(query, view, recent, uid)
            else:
                text = await self.blocking(search_flags, query, view, set(recent), uid)
            self.send(search_reply(text))
            return "SEARCH completed"
        if inline:
            found = flag_matches(query, view, recent, uid)
        elif query.flags_only:
            found = await self.blocking(flag_matches, query, view, set(recent), uid)
        else:
            found = await self.blocking(self._search, view, query, uid)
        if options is None:
            self.send(search_reply(numbers.join(found, found[-1] if found else 0)))
        else:
            self.send(esearch_reply(tag, uid, options, found))
        return "SEARCH completed"

    def _search(self, view: Sequence[MessageInfo], query: Query, uid: bool) -> list[int]:
        """The messages ``query`` matches, read from their files as its keys need."""
        selected = self.selected
        assert selected is not None
        folder, flags_of = selected.folder, self.flags_of
        folder_dir = str(folder.dir)
        source_of = fetch.Source.of
        found = []
        for position, info in enumerate(view):
            if not info.filename:
                continue
            candidate = Candidate(
                position + 1, info, flags_of(info), lambda i=info: source_of(folder, i, folder_dir)
            )
            try:
                if query.matches(candidate):
                    found.append(info.uid if uid else position + 1)
            except MessageGone:
                continue
            finally:
                candidate.close()
        return found

    # ------------------------------------------------------------------ COPY, MOVE
    async def cmd_COPY(self, tag: str, args: list, uid: bool = False, move: bool = False) -> str:
        """COPY set mailbox (UIDPLUS: COPYUID)."""
        if len(args) != 2:
            raise Bad(f"Syntax: {'MOVE' if move else 'COPY'} set mailbox")
        selected = self._readwrite() if move else self.selected
        assert selected is not None
        target = self.mailbox_name(args[1])
        view = await self.view()
        positions = self.indices(view, args[0], uid)
        uids = [view[i].uid for i in positions if view[i].filename]
        if not uids:
            if positions and not uid:
                raise No("[EXPUNGEISSUED] The messages were expunged by another session")
            return "No messages to copy"
        size = sum(view[i].size for i in positions)
        if not move:
            await self.check_quota(size)
        try:
            pairs, uidvalidity = await self.blocking(
                _copy, self.kept_folders, selected.folder, uids, target
            )
        except FolderNotFound:
            raise No("[TRYCREATE] No such mailbox") from None
        except BadFolderName as exc:
            raise No(f"[CANNOT] {exc}") from None
        except TooManyKeywords as exc:
            raise No(f"[LIMIT] The copies' keywords do not fit: {exc}") from None
        code = ""
        if pairs:
            sources = parser.format_set([s for s, _ in pairs])
            targets = parser.format_set([t for _, t in pairs])
            code = f"[COPYUID {uidvalidity} {sources} {targets}] "
        if not move:
            if pairs and self.maildir is not None:
                copied = sum(view[i].size for i in positions if view[i].uid in dict(pairs))
                await self.blocking(maildir.adjust_usage, self.maildir, copied, len(pairs))
            return f"{code}COPY completed"
        self.send(f"* OK {code}Moved")
        done = await self.blocking(selected.folder.expunge, [s for s, _ in pairs])
        self.send_expunged(done, await self.view())
        return "MOVE completed"

    async def cmd_MOVE(self, tag: str, args: list, uid: bool = False) -> str:
        """MOVE set mailbox (RFC 6851)."""
        return await self.cmd_COPY(tag, args, uid=uid, move=True)
