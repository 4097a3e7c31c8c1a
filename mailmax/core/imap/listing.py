"""LIST/LSUB name matching, folder attributes and the subscriptions file (RFC 3501 6.3.8-9).

Patterns are matched by a bit-parallel NFA: each name costs one pass over its characters with
a few integer operations per character, whatever the pattern (``%*%*%*...`` included), so no
pattern can make matching backtrack. ``*`` matches anything, ``%`` anything but the hierarchy
delimiter ``/``; INBOX matches in any letter case.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mailmax.core.store.names import is_inbox

DELIMITER = "/"
#: Longest reference + pattern accepted.
MAX_PATTERN = 1024
#: Special-use folders (RFC 6154), created at a user's first log-in.
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk"}
SUBSCRIPTIONS = "subscriptions"


def normalize_inbox(name: str) -> str:
    """``inbox/x`` -> ``INBOX/x``: the INBOX level is case-insensitive."""
    if name[:5].upper() == "INBOX" and (len(name) == 5 or name[5] == DELIMITER):
        return "INBOX" + name[5:]
    return name


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A matcher for a LIST pattern (linear in the length of each name tested)."""
    pattern = normalize_inbox(pattern)
    tokens: list[str] = []
    for ch in pattern:
        if ch in "*%" and tokens and tokens[-1] in ("*", "%"):
            if ch == "*":
                tokens[-1] = "*"
            continue
        tokens.append(ch)
    size = len(tokens)
    star = pct = 0
    literal: dict[str, int] = {}
    for index, token in enumerate(tokens):
        bit = 1 << index
        if token == "*":
            star |= bit
        elif token == "%":
            pct |= bit
        else:
            literal[token] = literal.get(token, 0) | bit
    wild = star | pct
    accept = 1 << size

    def closure(states: int) -> int:
        return states | ((states & wild) << 1)

    start = closure(1)

    def match(name: str) -> bool:
        states = start
        for ch in normalize_inbox(name):
            moved = (states & literal.get(ch, 0)) << 1
            moved |= states & (star if ch == DELIMITER else wild)
            states = closure(moved)
            if not states:
                return False
        return bool(states & accept)

    return match


def ancestors(name: str) -> Iterable[str]:
    """``a/b/c`` -> ``a``, ``a/b``."""
    parts = name.split(DELIMITER)
    for end in range(1, len(parts)):
        yield DELIMITER.join(parts[:end])


def matching(names: Iterable[str], pattern: str) -> list[tuple[str, bool]]:
    """``(name, exists)`` matching the pattern, in order; parents that only exist implicitly
    (they have matching-hidden descendants) come with ``exists`` False."""
    match = compile_pattern(pattern)
    present = list(dict.fromkeys(names))
    known = set(present)
    found: dict[str, bool] = {}
    for name in present:
        if match(name):
            found[name] = True
            continue
        for parent in ancestors(name):
            if parent not in known and parent not in found and match(parent):
                found[parent] = False
    return sorted(found.items(), key=lambda item: (not is_inbox(item[0]), item[0]))


def attributes(name: str, exists: bool, all_names: set[str], parents: set[str]) -> list[str]:
    """LIST attributes: \\Noselect, \\HasChildren/\\HasNoChildren, special use."""
    attrs = []
    if not exists:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
    special = SPECIAL_USE.get(name)
    if special and exists:
        attrs.append(special)
    return attrs


def parent_set(names: Iterable[str]) -> set[str]:
    """Every name that has a descendant among ``names``."""
    parents: set[str] = set()
    for name in names:
        parents.update(ancestors(name))
    return parents


# ---------------------------------------------------------------------- subscriptions
@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / (SUBSCRIPTIONS + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_subscriptions(root: Path) -> list[str] | None:
    """The subscribed names (one UTF-8 name a line), or None when there is no file yet."""
    try:
        text = (root / SUBSCRIPTIONS).read_text("utf-8", "replace")
    except FileNotFoundError:
        return None
    return [line for line in text.splitlines() if line.strip()]


def _write(root: Path, names: list[str]) -> None:
    tmp = root / f"{SUBSCRIPTIONS}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{name}\n" for name in names))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / SUBSCRIPTIONS)


def change_subscriptions(root: Path, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
    """Subscribe and unsubscribe names (atomic replace under a lock)."""
    with _locked(root):
        names = read_subscriptions(root) or []
        drop = {normalize_inbox(n) for n in remove}
        kept = [n for n in names if n not in drop]
        for name in add:
            name = normalize_inbox(name)
            if name not in kept:
                kept.append(name)
        _write(root, kept)


def rename_subscriptions(root: Path, old: str, new: str) -> None:
    """Follow a folder rename (and its subfolders) in the subscriptions."""
    with _locked(root):
        names = read_subscriptions(root)
        if not names:
            return
        prefix = old + DELIMITER
        changed = []
        for name in names:
            if name == old and not is_inbox(old):
                name = new
            elif name.startswith(prefix):
                name = new + DELIMITER + name[len(prefix) :]
            changed.append(name)
        _write(root, list(dict.fromkeys(changed)))


def first_login_setup(store: object, root: Path) -> list[str]:
    """On a mailbox's first IMAP log-in: create the special-use folders and subscribe them.

    The subscriptions file marks that this was done; returns the folders created.
    """
    from mailmax.core.store.errors import FolderExists

    if read_subscriptions(root) is not None:
        return []
    created = []
    for name in SPECIAL_USE:
        if not store.exists(name):  # type: ignore[attr-defined]
            with contextlib.suppress(FolderExists):
                store.create_folder(name)  # type: ignore[attr-defined]
                created.append(name)
    change_subscriptions(root, add=["INBOX", *SPECIAL_USE])
    return created
