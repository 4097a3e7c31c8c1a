"""Alias loops: refused by ``mailmax alias``; one met at delivery bounces, never vanishes."""

from __future__ import annotations

import sqlalchemy as sa

from tests.test_queue_support import parse_dsn


def test_a_loop_met_at_delivery_bounces_to_the_sender(mailmax):
    """A loop written into the database behind the CLI's back: 250 at DATA, then a 5.4.6 DSN."""
    mailmax.cli("alias", "add", "loop2@example.test", "alice@example.test")
    mailmax.cli("alias", "add", "loop1@example.test", "loop2@example.test")
    refused = mailmax.cli("alias", "edit", "loop2@example.test", "loop1@example.test", check=False)
    assert refused.returncode == 1
    assert "loop" in refused.stderr
    engine = sa.create_engine(f"sqlite:///{mailmax.data_dir / 'mailmax.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE alias_targets SET target = 'loop1@example.test' WHERE alias_id ="
                " (SELECT id FROM aliases WHERE name = 'loop2')"
            )
        )
    engine.dispose()
    assert mailmax.cli("alias", "show", "loop2@example.test", "--json").stdout.count("loop1") == 1
    with mailmax.smtp() as client:
        client.sendmail(
            "bob@example.test",
            ["loop1@example.test"],
            b"From: bob@example.test\r\nTo: loop1@example.test\r\nSubject: round\r\n\r\nhi\r\n",
        )
    (dsn,) = mailmax.wait_for_mail("bob@example.test")
    _, recipients = parse_dsn(dsn)
    assert [r["Status"] for r in recipients] == ["5.4.6"]
    assert b"alias loop" in dsn
    assert mailmax.messages("alice@example.test") == []


def test_a_partial_loop_still_delivers(mailmax):
    """Targets that come back to the alias are fine as long as one of them reaches a mailbox."""
    mailmax.cli("alias", "add", "team@example.test", "alice@example.test")
    mailmax.cli("alias", "add", "all@example.test", "team@example.test", "bob@example.test")
    with mailmax.smtp() as client:
        client.sendmail("x@remote.test", ["all@example.test"], b"Subject: s\r\n\r\nhi\r\n")
    mailmax.wait_for_mail("alice@example.test")
    mailmax.wait_for_mail("bob@example.test")
