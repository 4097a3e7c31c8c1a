"""Programs that rules run: a test condition or an action, given the attachments or the message.

A program gets the message in a fresh temporary folder that is always removed afterwards: with
``%F`` among its arguments, the folder holding each attachment, decoded, as a file; with ``%M``,
the path of a file holding the whole message. As a condition it holds when the program removed
what it was handed (one attachment is enough). It runs without a shell, with a time limit, no
input and a small fixed environment (see :mod:`mailmax.core.programs`); its output goes to the
log only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailmax.core.programs import ENVIRONMENT, MAX_OUTPUT, ProgramError, run_program
from mailmax.plugins.antivirus.mime import safe_file_name
from mailmax.plugins.rules.message import MessageView
from mailmax.plugins.rules.syntax import FILES, MESSAGE


def prepare(
    root: Path, argv: Sequence[str], view: MessageView
) -> tuple[str, list[str], list[Path]]:
    """Blocking: a new folder under ``root`` with the message's files; ``(folder, argv, files)``
    with ``%F``/``%M`` in ``argv`` replaced by the attachments' folder or the message file."""
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="rule-", dir=root))
    try:
        if MESSAGE in argv:
            handed = [folder / "message.eml"]
            handed[0].write_bytes(view.data)
            place = str(handed[0])
        else:
            files = folder / "files"
            files.mkdir()
            handed = []
            for number, attachment in enumerate(view.attachments, start=1):
                path = files / safe_file_name(attachment, number)
                path.write_bytes(attachment.payload)
                handed.append(path)
            place = str(files)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(folder), [place if arg in (FILES, MESSAGE) else arg for arg in argv], handed


def removed_any(files: Sequence[Path]) -> bool:
    """Blocking: whether the program removed one of the files it was handed."""
    return any(not path.exists() for path in files)


def finish(folder: str, files: Sequence[Path]) -> bool:
    """Blocking: whether a handed file was removed; the folder is removed in any case."""
    try:
        return removed_any(files)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def run_in_server(
    reactor: Any,
    in_thread: Callable[..., Any],
    root: Path,
    argv: Sequence[str],
    view: MessageView,
    timeout: float,
    log: Any,
) -> bool:
    """Run ``argv`` on the reactor; True when it removed a file it was handed.

    A program that cannot run, fails or runs out of time counts as "nothing removed"; the log
    says what happened and what it printed.
    """
    folder, args, files = await in_thread(prepare, root, argv, view)
    try:
        result = await run_program(reactor, args, folder, timeout)
        log.info(
            "rule program {program} ended with {status}: {output}",
            program=argv[0],
            status=result.status,
            output=result.output.strip()[-2000:],
        )
    except ProgramError as exc:
        log.error("rule program {program}: {error}", program=argv[0], error=str(exc))
    finally:
        gone = await in_thread(finish, folder, files)
    return bool(gone)


def run_here(
    root: Path, argv: Sequence[str], view: MessageView, timeout: float
) -> tuple[bool, str]:
    """Blocking (the CLI's dry run): run ``argv``; (removed a file, what it printed or why not)."""
    folder, args, files = prepare(root, argv, view)
    try:
        try:
            done = subprocess.run(
                args,
                cwd=folder,
                env=ENVIRONMENT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            output = (done.stdout + done.stderr)[:MAX_OUTPUT].decode("utf-8", "replace")
            note = f"ended with {done.returncode}: {output.strip()[-500:]}"
        except subprocess.TimeoutExpired:
            note = f"took longer than {timeout:g} s and was stopped"
        except OSError as exc:
            note = f"cannot run: {exc}"
    finally:
        gone = finish(folder, files)
    return gone, note
