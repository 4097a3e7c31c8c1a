"""What deleting a domain or a user does to its mail directory.

The directory is moved aside *inside* the database transaction that deletes the records: when
the move fails the records stay, and when the commit fails the directory is moved back. Only
then is an archived directory left alone or a removed one deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mailmax.core.directory.api import DeleteMode
from mailmax.core.directory.errors import DirectoryError


def normal(path: Path) -> Path:
    """``path`` made absolute with ``.`` and ``..`` resolved (symbolic links are not followed)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def overlap(one: Path, other: Path) -> bool:
    """True when one of two normalised paths is the other or inside it."""
    return one == other or one in other.parents or other in one.parents


def _aside(path: Path, word: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate = path.with_name(f"{path.name}.{word}-{stamp}")
    counter = 1
    while candidate.exists() or candidate.is_symlink():
        counter += 1
        candidate = path.with_name(f"{path.name}.{word}-{stamp}-{counter}")
    return candidate


@contextlib.contextmanager
def disposal(mode: DeleteMode) -> Iterator[Callable[[Path], None]]:
    """Yield ``dispose(path)`` for use inside the deleting transaction (see module doc)."""
    mode = DeleteMode(mode)
    moved: list[tuple[Path, Path]] = []

    def dispose(path: Path) -> None:
        if mode is DeleteMode.DATABASE or not (path.exists() or path.is_symlink()):
            return
        path = normal(path)
        if path.parent == path:
            raise DirectoryError(f"refusing to {mode.value} {path}: it is the root folder")
        target = _aside(path, "deleted" if mode is DeleteMode.ARCHIVE else "deleting")
        try:
            os.rename(path, target)
        except OSError as exc:
            raise DirectoryError(
                f"cannot {mode.value} the mail folder {path} ({exc.strerror}); nothing was "
                "deleted: fix the folder's permissions or delete with mode=database"
            ) from None
        moved.append((path, target))

    try:
        yield dispose
    except BaseException:
        for original, target in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(target, original)
        raise
    if mode is DeleteMode.REMOVE:
        for _, target in moved:
            try:
                if target.is_symlink() or not target.is_dir():
                    target.unlink()
                else:
                    shutil.rmtree(target)
            except OSError as exc:
                raise DirectoryError(
                    f"the records are deleted and the mail was moved to {target}, but it could "
                    f"not be removed ({exc.strerror}); remove that folder by hand"
                ) from None
