"""Alias loops: refused by ``mailmax alias``; one met at delivery bounces, never vanishes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tests.fixtures.ports import wait_until
from tests.test_queue_support import parse_dsn


def set_targets_behind_the_cli(database: Path, alias: str, targets: list[str]) -> None:
    """Write an alias's targets straight into the database, as another tool could."""
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        alias_id = conn.execute(
            sa.text("SELECT id FROM aliases WHERE name = :name"), {"name": alias}
        ).scalar_one()
        conn.execute(sa.text("DELETE FROM alias_targets WHERE alias_id = :id"), {"id": alias_id})
        for position, target in enumerate(targets):
            conn.execute(
                sa.text(
                    "INSERT INTO alias_targets (alias_id, position, target)"
                    " VALUES (:id, :position, :target)"
                ),
                {"id": alias_id, "position": position, "target": target},
            )
    engine.dispose()


def send(mailmax, sender: str, recipient: str) -> None:
    with mailmax.smtp() as client:
        client.sendmail(
            sender,
            [recipient],
            f"From: {sender}\r\nTo: {recipient}\r\nSubject: round\r\n\r\nhi\r\n".encode(),
        )


def test_a_loop_met_at_delivery_bounces_to_the_sender(mailmax):
    """The CLI refuses the loop; written behind its back, it gets 250 at DATA, then a DSN."""
    mailmax.cli("alias", "add", "loop2@example.test", "alice@example.test")
    mailmax.cli("alias", "add", "loop1@example.test", "loop2@example.test")
    refused = mailmax.cli("alias", "edit", "loop2@example.test", "loop1@example.test", check=False)
    assert refused.returncode == 1
    assert "loop2@example.test -> loop1@example.test -> loop2@example.test" in refused.stderr
    set_targets_behind_the_cli(mailmax.data_dir / "mailmax.db", "loop2", ["loop1@example.test"])
    send(mailmax, "bob@example.test", "loop1@example.test")
    (dsn,) = mailmax.wait_for_mail("bob@example.test")
    _, recipients = parse_dsn(dsn)
    assert [r["Status"] for r in recipients] == ["5.4.6"]
    assert b"alias loop" in dsn
    assert mailmax.messages("alice@example.test") == []


def test_a_loop_that_also_reaches_a_mailbox_delivers_once(mailmax):
    """A chain that comes back to itself but also names a user delivers to that user, once."""
    mailmax.cli("alias", "add", "ring2@example.test", "alice@example.test")
    mailmax.cli("alias", "add", "ring1@example.test", "ring2@example.test")
    set_targets_behind_the_cli(
        mailmax.data_dir / "mailmax.db", "ring2", ["ring1@example.test", "alice@example.test"]
    )
    send(mailmax, "bob@example.test", "ring1@example.test")
    (stored,) = mailmax.wait_for_mail("alice@example.test")
    assert b"Subject: round" in stored
    wait_until(
        lambda: mailmax.cli("queue", "list", "--json").stdout.strip() == "[]", 10, "an empty queue"
    )
    assert mailmax.messages("bob@example.test") == []  # no bounce
    assert len(mailmax.messages("alice@example.test")) == 1
