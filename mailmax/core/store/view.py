"""What a folder view is made of: one message's facts, what changed, flag sets by letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from mailmax.core.store.index import flags_of


class MessageInfo(NamedTuple):
    """One message of a folder view. ``flags`` holds system flags and keywords."""

    uid: int
    size: int
    flags: frozenset[str]
    internaldate: float
    #: ``new/<name>`` or ``cur/<name>``, relative to ``folder_dir``.
    filename: str
    folder_dir: Path

    @property
    def path(self) -> Path:
        """The message file."""
        return self.folder_dir / self.filename

    @property
    def recent(self) -> bool:
        """True while the file is still in ``new/`` (nobody has claimed it)."""
        return self.filename.startswith("new/")


@dataclass(slots=True)
class FolderChanges:
    """What :meth:`Folder.refresh` found since this Folder object last looked."""

    added: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.expunged or self.flags)


class FlagCache(dict[tuple[str, str], frozenset[str]]):
    """(info letters, keywords) -> flags, computed once per distinct pair."""

    def __missing__(self, key: tuple[str, str]) -> frozenset[str]:
        flags = self[key] = flags_of(*key)
        return flags
