"""The delete flow shared by domains and users: confirm, delete, report the mail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from mailmax.core.cli.context import app, confirm_or_refuse
from mailmax.core.directory.api import DeleteMode

MODE_HELP = (
    "database: remove the records, keep the mail; archive: also rename the mail directory "
    "with the date; remove: also delete the mail directory and all mail in it."
)

mode_option = click.option(
    "--mode", required=True, type=click.Choice([m.value for m in DeleteMode]), help=MODE_HELP
)
yes_option = click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (required when stdin is no TTY)."
)


def _neighbours(folder: Path) -> set[Path]:
    """Entries beside ``folder`` whose names start with its name (where an archive appears)."""
    if not folder.parent.is_dir():
        return set()
    return {p for p in folder.parent.iterdir() if p.name.startswith(folder.name) and p != folder}


def delete_flow(
    what: str, folder: Path, mode: str, yes: bool, delete: Callable[[DeleteMode], None]
) -> None:
    """Confirm deleting ``what`` (mail in ``folder``) in ``mode``, run ``delete``, report."""
    chosen = DeleteMode(mode)
    effect = {
        DeleteMode.DATABASE: f"delete {what}, keeping the mail in {folder}",
        DeleteMode.ARCHIVE: f"delete {what}, archiving {folder} under a dated name",
        DeleteMode.REMOVE: f"delete {what} and REMOVE {folder} with all its mail",
    }[chosen]
    confirm_or_refuse(effect, yes)
    before = _neighbours(folder)
    delete(chosen)
    archived = sorted(_neighbours(folder) - before)
    result: dict[str, str] = {"deleted": what, "mode": chosen.value, "mail_dir": str(folder)}
    message = f"deleted {what} ({chosen.value})"
    if chosen is DeleteMode.DATABASE:
        message += f"; mail kept in {folder}"
    elif archived:
        result["archived_to"] = str(archived[0])
        message += f"; mail archived in {archived[0]}"
    elif chosen is DeleteMode.REMOVE:
        message += f"; removed {folder}"
    app().out.done(message, **result)
