"""The selected mailbox: SELECT/EXAMINE, CHECK, CLOSE/UNSELECT, EXPUNGE, IDLE and updates.

The commands on sets of its messages (FETCH, STORE, SEARCH, COPY/MOVE, UID) are in
:mod:`mailmax.core.imap.messages`, built on the helpers here.

Message sequence numbers are positions in the session's :class:`~mailmax.core.store.Folder`
view, which changes only through this session's own calls and ``refresh()``. Changes made by
other sessions (deliveries, flags, expunges) are picked up by :meth:`send_updates` after a
command and reported as EXISTS/RECENT/FETCH/EXPUNGE; after FETCH, STORE and SEARCH nothing is
reported (RFC 3501 7.4.1 forbids EXPUNGE there), so the numbering the client relies on stays
put. A keyword new to the client, whoever set it, is announced with ``* FLAGS`` before the
first FETCH showing it. IDLE polls the folder every ``idle_poll_seconds``; a poll costs two
``stat`` calls when nothing changed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailmax.core.imap import parser, wire
from mailmax.core.imap.base import SessionBase
from mailmax.core.imap.errors import Bad, No
from mailmax.core.imap.search import RECENT
from mailmax.core.store import maildir
from mailmax.core.store.errors import BadFolderName, FolderNotFound, StoreError, UidValidityChanged
from mailmax.core.store.folder import Folder, MessageInfo
from mailmax.core.store.names import MAX_KEYWORDS

if TYPE_CHECKING:
    from mailmax.core.store.mailbox import MailStore

log = Logger(namespace="mailmax.imap")

_UID = itemgetter(0)
_SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
#: Flags a client knows of without ``* FLAGS`` naming them as keywords.
KNOWN_FLAGS = frozenset({*_SYSTEM_FLAGS, "\\Recent"})
#: Lines other than DONE tolerated during one IDLE.
MAX_IDLE_NOISE = 20
#: Seconds from a SELECT reply to reading the message list in a thread (see cmd_SELECT).
WARM_DELAY = 0.005


@dataclass(slots=True)
class Selected:
    """The selected mailbox of a session."""

    name: str
    folder: Folder
    readonly: bool
    recent: set[int] = field(default_factory=set)
    #: the keywords the client was told of in ``* FLAGS``, with the system flags
    known_flags: set[str] = field(default_factory=lambda: set(KNOWN_FLAGS))


def _flag_lines(selected: Selected) -> list[str]:
    """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the flags the client knows of."""
    keywords = sorted(selected.known_flags - KNOWN_FLAGS, key=str.lower)
    flags = " ".join([*_SYSTEM_FLAGS, *keywords])
    if selected.readonly:
        permanent = ""
    elif len(keywords) >= MAX_KEYWORDS:  # no new keyword can be made (RFC 3501 7.1)
        permanent = flags
    else:
        permanent = f"{flags} \\*"
    return [f"* FLAGS ({flags})", f"* OK [PERMANENTFLAGS ({permanent})] Limited"]


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
            return info.flags | RECENT
        return info.flags

    def new_keyword_lines(self, flags: frozenset[str]) -> list[str]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS ...]`` when ``flags`` hold a keyword the
        client was not told of, else nothing: to go out before the response showing ``flags``.

        A client may take ``* FLAGS`` as the complete list of the mailbox's flags (RFC 3501
        7.2.6), so a keyword that a STORE (of this session or another) or a delivery adds is
        announced before it first appears in a FETCH response.
        """
        selected = self.selected
        assert selected is not None
        if flags <= selected.known_flags:
            return []
        selected.known_flags |= flags
        return _flag_lines(selected)

    def send_new_keywords(self, flags: frozenset[str]) -> None:
        """Send :meth:`new_keyword_lines` now."""
        for line in self.new_keyword_lines(flags):
            self.send(line)

    async def view(self) -> Sequence[MessageInfo]:
        """The selected folder's messages (read in a thread unless they are in memory)."""
        assert self.selected is not None
        folder = self.selected.folder
        loaded = folder.loaded_messages()
        if loaded is not None:
            return loaded
        return await self.blocking(folder.messages)

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
                flags = self.flags_of(view[position])
                self.send_new_keywords(flags)
                line = b"* %d FETCH (UID %d FLAGS %s)"
                self.send(line % (position + 1, uid, wire.flag_list(flags)))
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
        selected = Selected(folder.name, folder, readonly, set(facts["recent_uids"]))
        selected.known_flags.update(facts["keywords"])
        self.selected = selected
        self.state = "selected"
        # read the message list while the client reads the reply (FETCH usually follows),
        # once the reply is on its way: a thread started now would hold it up (the reply
        # is written after this reactor turn, and calls due now still run in this turn)
        self.reactor.callLater(WARM_DELAY, self._warm, folder)
        for line in _flag_lines(selected):
            self.send(line)
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

    # ------------------------------------------------------------------ IDLE
    async def cmd_IDLE(self, tag: str, args: list) -> None:
        """IDLE (RFC 2177): report changes as they happen until the client says DONE."""
        if args:
            raise Bad("IDLE takes no arguments")
        if self.selected is not None:
            await self.send_updates(True)
        kept = self.open_folders
        if kept is not None:  # a session about to sit idle holds no folder it is not using
            await self.blocking(kept.close, False)
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
