"""Selected-state commands: SELECT/EXAMINE, FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE, IDLE.

Message sequence numbers are positions in the session's :class:`~mailmax.core.store.Folder`
view, which changes only through this session's own calls and ``refresh()``. Changes made by
other sessions (deliveries, flags, expunges) are picked up by :meth:`send_updates` after a
command and reported as EXISTS/RECENT/FETCH/EXPUNGE; after FETCH, STORE and SEARCH nothing is
reported (RFC 3501 7.4.1 forbids EXPUNGE there), so the numbering the client relies on stays
put. IDLE polls the folder every ``idle_poll_seconds``; a poll costs two ``stat`` calls when
nothing changed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, task
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.imap import fetch, parser, wire
from mailmax.core.imap.base import SessionBase
from mailmax.core.imap.errors import Bad, No
from mailmax.core.imap.search import BadCharset, Candidate, Query
from mailmax.core.store import maildir
from mailmax.core.store.errors import (
    BadFlag,
    BadFolderName,
    FolderNotFound,
    MessageGone,
    StoreError,
    UidValidityChanged,
)
from mailmax.core.store.folder import Folder, MessageInfo

if TYPE_CHECKING:
    from mailmax.core.store.mailbox import MailStore

log = Logger(namespace="mailmax.imap")

_UID = itemgetter(0)
_RECENT = frozenset({"\\Recent"})
_SYSTEM_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
#: Lines other than DONE tolerated during one IDLE.
MAX_IDLE_NOISE = 20
#: Seconds from a SELECT reply to reading the message list in a thread (see cmd_SELECT).
WARM_DELAY = 0.005
#: FETCH responses answered from the index that are joined before they go to the stream.
META_BATCH = 256


@dataclass(slots=True)
class Selected:
    """The selected mailbox of a session."""

    name: str
    folder: Folder
    readonly: bool
    recent: set[int] = field(default_factory=set)


def _open(store: MailStore, name: str, readonly: bool) -> tuple[Folder, dict[str, Any]]:
    folder = store.open(name)
    early = folder.early
    if early is not None:  # its index is still being written: the facts are known already
        return folder, {
            "recent_uids": [],
            "recent": 0,
            "exists": early.count,
            "unseen": early.first_unseen_position,
            "keywords": [],
        }
    try:
        waiting = folder.recent_count()
        if not waiting:
            recent: Any = []
        elif readonly:
            recent = folder.recent_uids()
        else:
            recent = folder.claim_recent()
        first = folder.first_unseen()
        facts = {
            "recent_uids": recent,
            "recent": len(recent),
            "exists": len(folder),
            "unseen": folder.position(first) if first else None,
            "keywords": folder.keywords(),
        }
    except BaseException:
        folder.close()
        raise
    return folder, facts


def _refresh(folder: Folder, readonly: bool) -> tuple[Any, list[int] | set[int], Any]:
    """Changes since the last look; the messages this session claimed as recent (read-write),
    or every recent message (read-only, claiming nothing); the view after expunges/flags."""
    changes = folder.refresh()
    recent: list[int] | set[int] = []
    if changes.added:
        recent = folder.recent_uids() if readonly else folder.claim_recent()
    view = folder.messages() if (changes.expunged or changes.flags) else None
    return changes, recent, view


def _copy(store: MailStore, folder: Folder, uids: list[int], name: str) -> tuple[list, int, Folder]:
    """Copy; return the UID pairs, the target's UIDVALIDITY and the target, still open."""
    target = store.open(name)
    try:
        return folder.copy(uids, target), target.uidvalidity, target
    except BaseException:
        target.close()
        raise


def _expunge(folder: Folder, uids: list[int] | None) -> list[int]:
    return folder.expunge(uids)


class SelectedCommands(SessionBase):
    """Mixin of :class:`~mailmax.core.imap.server.IMAPServer` for the selected state."""

    def init_selected(self) -> None:
        """Per-session state of this mixin."""
        self.selected = None
        self._idle_tag: str | None = None
        self._idle_loop: task.LoopingCall | None = None
        self._idle_poll: defer.Deferred[None] | None = None
        self._idle_noise = 0

    # ------------------------------------------------------------------ helpers
    def flags_of(self, info: MessageInfo) -> frozenset[str]:
        """A message's flags as the client sees them (``\\Recent`` included)."""
        selected = self.selected
        assert selected is not None
        if info.uid in selected.recent:
            return info.flags | _RECENT
        return info.flags

    async def view(self) -> Sequence[MessageInfo]:
        """The selected folder's messages (read in a thread the first time)."""
        assert self.selected is not None
        return await self.blocking(self.selected.folder.messages)

    def indices(self, view: Sequence[MessageInfo], value: Any, uid: bool) -> list[int]:
        """Positions in ``view`` named by a sequence set (of UIDs when ``uid``)."""
        try:
            seqset = parser.parse_sequence_set(value)
        except parser.ParseError:
            raise Bad("Invalid sequence set") from None
        out: list[int] = []
        if uid:
            largest = view[-1].uid if view else 0
            for lo, hi in parser.resolve(seqset, largest):
                start = bisect.bisect_left(view, lo, key=_UID)
                stop = bisect.bisect_right(view, hi, key=_UID)
                out.extend(range(start, stop))
            return out
        count = len(view)
        if not count:
            return out
        for lo, hi in parser.resolve(seqset, count):
            if lo < 1 or hi > count:
                raise Bad("Invalid message sequence number")
            out.extend(range(lo - 1, hi))
        return out

    def _warm(self, folder: Folder) -> None:
        """Read the message list of ``folder`` in a thread, if it is still selected."""
        selected = self.selected
        if self._closing or selected is None or selected.folder is not folder:
            return
        warming = self.blocking(folder.messages)
        warming.addErrback(lambda f: log.failure("cannot read {name}", f, name=folder.name))

    def release_selected(self) -> None:
        """Forget the selected mailbox and close it (in a thread)."""
        selected, self.selected = self.selected, None
        if selected is not None:
            self.close_later(selected.folder)

    def send_expunged(self, done: Sequence[int], view: Sequence[MessageInfo]) -> None:
        """``* n EXPUNGE`` for UIDs gone from ``view`` (the view after their removal)."""
        selected = self.selected
        for uid in sorted(done):
            seq = bisect.bisect_left(view, uid, key=_UID) + 1
            self.send(b"* %d EXPUNGE" % seq)
            if selected is not None:
                selected.recent.discard(uid)

    async def send_updates(self, expunges: bool = True) -> None:
        """Report what other sessions and deliveries changed (only when ``expunges``)."""
        selected = self.selected
        if selected is None or not expunges:
            return
        try:
            changes, recent, view = await self.blocking(
                _refresh, selected.folder, selected.readonly
            )
        except UidValidityChanged:
            self.bye("The mailbox was re-indexed (new UIDVALIDITY); please reconnect")
            return
        except (StoreError, OSError) as exc:
            log.warn("cannot refresh {name}: {error}", name=selected.name, error=str(exc))
            self.bye("The selected mailbox is unavailable")
            return
        except Exception:  # e.g. the index stayed locked: report the changes next time
            log.failure("cannot refresh {name}", name=selected.name)
            return
        if self.selected is not selected or not changes:
            return
        if changes.expunged:
            self.send_expunged(changes.expunged, view)
        for uid in sorted(changes.flags):
            position = bisect.bisect_left(view, uid, key=_UID)
            if position < len(view) and view[position].uid == uid:
                flags = wire.flag_list(self.flags_of(view[position]))
                self.send(b"* %d FETCH (UID %d FLAGS %s)" % (position + 1, uid, flags))
        if changes.added:
            self.send(b"* %d EXISTS" % len(selected.folder))
            if selected.readonly:
                selected.recent = set(recent)
            else:
                selected.recent.update(recent)
            self.send(b"* %d RECENT" % len(selected.recent))

    def _readwrite(self) -> Selected:
        selected = self.selected
        assert selected is not None
        if selected.readonly:
            raise No("[READ-ONLY] The mailbox is read-only (EXAMINE)")
        return selected

    # ------------------------------------------------------------------ SELECT and friends
    async def cmd_SELECT(self, tag: str, args: list, readonly: bool = False) -> str:
        """SELECT mailbox."""
        if len(args) != 1:
            raise Bad("Syntax: SELECT mailbox")
        name = self.mailbox_name(args[0])
        previous, self.selected = self.selected, None
        self.state = "auth"
        try:
            folder, facts = await self.blocking(_open, self.store, name, readonly)
        except FolderNotFound:
            raise No("[NONEXISTENT] No such mailbox") from None
        except BadFolderName as exc:
            raise No(f"[CANNOT] {exc}") from None
        finally:  # closed after the new one is open: the index stays warm on a re-SELECT
            if previous is not None:
                self.selected = previous
                self.release_selected()
        if self._closing:
            folder.close()
            return "Closed"
        self.selected = Selected(folder.name, folder, readonly, set(facts["recent_uids"]))
        self.state = "selected"
        # read the message list while the client reads the reply (FETCH usually follows),
        # once the reply is on its way: a thread started now would hold it up (the reply
        # is written after this reactor turn, and calls due now still run in this turn)
        self.reactor.callLater(WARM_DELAY, self._warm, folder)
        keywords = " ".join(facts["keywords"])
        flags = f"{_SYSTEM_FLAGS} {keywords}".strip()
        self.send(f"* FLAGS ({flags})")
        permanent = "" if readonly else f"{flags} \\*"
        self.send(f"* OK [PERMANENTFLAGS ({permanent})] Limited")
        self.send(f"* {facts['exists']} EXISTS")
        self.send(f"* {facts['recent']} RECENT")
        if facts["unseen"]:
            self.send(f"* OK [UNSEEN {facts['unseen']}] First unseen")
        self.send(f"* OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid")
        self.send(f"* OK [UIDNEXT {folder.uidnext}] Predicted next UID")
        if readonly:
            return "[READ-ONLY] EXAMINE completed"
        return "[READ-WRITE] SELECT completed"

    async def cmd_EXAMINE(self, tag: str, args: list) -> str:
        """EXAMINE mailbox: SELECT without changes."""
        return await self.cmd_SELECT(tag, args, readonly=True)

    def cmd_CHECK(self, tag: str, args: list) -> str:
        """CHECK: nothing to flush; updates follow."""
        return "CHECK completed"

    async def cmd_CLOSE(self, tag: str, args: list) -> str:
        """CLOSE: expunge silently (read-write), then leave the mailbox."""
        selected = self.selected
        assert selected is not None
        self.selected = None
        self.state = "auth"
        try:
            if not selected.readonly:
                await self._expunge_and_count(selected, None)
        finally:
            self.close_later(selected.folder)
        return "CLOSE completed"

    async def cmd_UNSELECT(self, tag: str, args: list) -> str:
        """UNSELECT (RFC 3691): leave the mailbox without expunging."""
        self.release_selected()
        self.state = "auth"
        return "UNSELECT completed"

    async def _expunge_and_count(self, selected: Selected, uids: list[int] | None) -> list[int]:
        view = await self.blocking(selected.folder.messages)
        sizes = {m.uid: m.size for m in view}
        done = await self.blocking(_expunge, selected.folder, uids)
        if done and self.maildir is not None:
            freed = sum(sizes.get(uid, 0) for uid in done)
            await self.blocking(maildir.adjust_usage, self.maildir, -freed, -len(done))
        return done

    async def cmd_EXPUNGE(self, tag: str, args: list, uid_set: Any = None) -> str:
        """EXPUNGE, or UID EXPUNGE set (RFC 4315)."""
        if args:
            raise Bad("EXPUNGE takes no arguments")
        selected = self._readwrite()
        uids = None
        if uid_set is not None:
            view = await self.view()
            uids = [
                view[i].uid
                for i in self.indices(view, uid_set, True)
                if "\\Deleted" in view[i].flags
            ]
        done = await self._expunge_and_count(selected, uids)
        self.send_expunged(done, await self.view())
        return "EXPUNGE completed"

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
                flags = info.flags | _RECENT if uid in recent else info.flags
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
                    yield from fetch.answer(info, position + 1, wanted, flags_of(info), source)
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
        gone = len(result) < len(positions)
        if not silent:
            view = await self.view()
            for position in positions:
                info = view[position]
                if info.uid not in result:
                    continue
                flags = wire.flag_list(self.flags_of(info))
                if uid:
                    line = b"* %d FETCH (UID %d FLAGS %s)" % (position + 1, info.uid, flags)
                else:
                    line = b"* %d FETCH (FLAGS %s)" % (position + 1, flags)
                self.send(line)
        if gone and not uid:
            raise No("[EXPUNGEISSUED] Some messages were expunged by another session")
        return "STORE completed"

    # ------------------------------------------------------------------ SEARCH
    async def cmd_SEARCH(self, tag: str, args: list, uid: bool = False) -> str:
        """SEARCH [CHARSET name] criteria."""
        view = await self.view()
        try:
            query = Query(args, largest_seq=len(view), largest_uid=view[-1].uid if view else 0)
        except BadCharset:
            raise No("[BADCHARSET (US-ASCII UTF-8)] Unsupported charset") from None
        except parser.ParseError as exc:
            raise Bad(str(exc)) from None
        found = await self.blocking(self._search, view, query, uid)
        self.send("* SEARCH" + "".join(f" {n}" for n in found))
        return "SEARCH completed"

    def _search(self, view: Sequence[MessageInfo], query: Query, uid: bool) -> list[int]:
        selected = self.selected
        assert selected is not None
        folder, flags_of = selected.folder, self.flags_of
        folder_dir = str(folder.dir)
        found = []
        for position, info in enumerate(view):
            if not info.filename:
                continue
            source = fetch.Source.of(folder, info, folder_dir)
            try:
                if query.matches(Candidate(position + 1, info, flags_of(info), source)):
                    found.append(info.uid if uid else position + 1)
            except MessageGone:
                continue
            finally:
                source.close()
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
            pairs, uidvalidity, opened = await self.blocking(
                _copy, self.store, selected.folder, uids, target
            )
        except FolderNotFound:
            raise No("[TRYCREATE] No such mailbox") from None
        except BadFolderName as exc:
            raise No(f"[CANNOT] {exc}") from None
        self.close_later(opened)
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
        done = await self.blocking(_expunge, selected.folder, [s for s, _ in pairs])
        self.send_expunged(done, await self.view())
        return "MOVE completed"

    async def cmd_MOVE(self, tag: str, args: list, uid: bool = False) -> str:
        """MOVE set mailbox (RFC 6851)."""
        return await self.cmd_COPY(tag, args, uid=uid, move=True)

    # ------------------------------------------------------------------ IDLE
    async def cmd_IDLE(self, tag: str, args: list) -> None:
        """IDLE (RFC 2177): report changes as they happen until the client says DONE."""
        if args:
            raise Bad("IDLE takes no arguments")
        if self.selected is not None:
            await self.send_updates(True)
        self.send("+ idling")
        self._idle_tag = tag
        self._idle_noise = 0
        self.reader.raw = True
        if self.selected is not None:
            loop = task.LoopingCall(self._idle_tick)
            loop.clock = self.reactor
            self._idle_loop = loop
            loop.start(self.limits.idle_poll_seconds, now=False).addErrback(
                lambda f: log.failure("IDLE poll failed", f)
            )

    def _idle_tick(self) -> None:
        if self._idle_poll is not None or self._closing or self._idle_tag is None:
            return
        poll = defer.ensureDeferred(self.send_updates(True))
        self._idle_poll = poll

        def finished(result: Any) -> None:
            self._idle_poll = None
            if isinstance(result, Failure):
                log.failure("IDLE poll failed", result)

        poll.addBoth(finished)

    def stop_idle(self) -> None:
        """Stop polling for IDLE."""
        loop, self._idle_loop = self._idle_loop, None
        if loop is not None and loop.running:
            loop.stop()

    def idle_line(self, line: bytes) -> None:
        """A line while idling: DONE ends IDLE; anything else is an error, IDLE goes on."""
        tag = self._idle_tag
        if tag is None:
            return
        if line.strip().upper() != b"DONE":
            self._idle_noise += 1
            self.send("* BAD Expected DONE to end IDLE")
            if self._idle_noise >= MAX_IDLE_NOISE:
                self.bye("Too many invalid lines during IDLE")
            return
        self._idle_tag = None
        self.reader.raw = False
        self.stop_idle()
        self.start_work(defer.ensureDeferred(self._idle_done(tag)), tag)

    async def _idle_done(self, tag: str) -> None:
        if self._idle_poll is not None:
            waiter: defer.Deferred[None] = defer.Deferred()

            def release(result: Any) -> Any:
                waiter.callback(None)
                return result

            self._idle_poll.addBoth(release)
            await waiter
        if self.selected is not None:
            await self.send_updates(True)
        self.tagged(tag, "OK", "IDLE terminated")
