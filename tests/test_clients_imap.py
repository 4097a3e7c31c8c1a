"""Real IMAP clients against the whole server (``twistd mailmax``): getmail6 over IMAPS into a
Maildir, and mbsync (isync) syncing every folder both ways over STARTTLS (S3, S1).

What is asserted is what a user sees: the messages in the client's Maildir, the flags in its
file names, and the server's folders and flags as imaplib reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailmax.core.tls import write_self_signed
from tests.clients_support import (
    deliver_by_smtp,
    find_local,
    getmail_maildir,
    imap_login,
    local_messages,
    run_getmail,
    run_mbsync,
    server_folders,
    server_messages,
    write_local,
    write_mbsyncrc,
)
from tests.fixtures.server import MailMaxServer

ALICE = "alice@example.test"


def _unix(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def test_getmail_fetches_over_imaps_into_a_maildir(
    mailmax_factory: Callable[..., MailMaxServer], tmp_path: Path
) -> None:
    """S3, S1: getmail6 logs in over IMAPS (certificate pinned, host name checked) and puts
    every message delivered by SMTP into its Maildir, content intact; a second run finds
    nothing new; a certificate from another CA makes it refuse the server."""
    server = mailmax_factory()
    bodies = {"first": "one", "second": ".a line starting with a dot\r\ntwo", "third": "three"}
    for subject, body in bodies.items():
        deliver_by_smtp(server, subject, body)
    stored = server.wait_for_mail(ALICE, len(bodies))

    with getmail_maildir() as destination:
        code, log = run_getmail(
            tmp_path, server, destination, ca_certs=server.cert_path, read_all=False
        )
        assert code == 0, log
        fetched = [_unix(m.read()) for m in local_messages(destination)]
        assert len(fetched) == 3, log
        for original in stored:
            # getmail replaces Return-Path, adds a Received on top and a header of its own
            header, body = _unix(original).split(b"\n\n", 1)
            header = header.split(b"\n", 1)[1]
            matches = [got for got in fetched if header in got and got.endswith(b"\n\n" + body)]
            assert len(matches) == 1, (original, fetched)
        assert any(b"\n.a line starting with a dot\ntwo\n" in got for got in fetched)

        code, log = run_getmail(
            tmp_path, server, destination, ca_certs=server.cert_path, read_all=False
        )
        assert code == 0, log
        assert "0 messages" in log, log
        assert len(local_messages(destination)) == 3

        other = tmp_path / "other-ca"
        write_self_signed(other / "cert.pem", other / "key.pem", ["localhost"])
        code, log = run_getmail(
            tmp_path, server, destination, ca_certs=other / "cert.pem", read_all=True
        )
        assert code != 0, log
        assert "CERTIFICATE_VERIFY_FAILED" in log, log
        assert len(local_messages(destination)) == 3

    client = imap_login(server)
    try:  # fetching left the server's copies alone
        inbox = server_messages(client, "INBOX")
        assert sorted(inbox) == [b"Subject: first", b"Subject: second", b"Subject: third"]
    finally:
        client.logout()


def test_mbsync_syncs_folders_both_ways_over_starttls(
    mailmax_factory: Callable[..., MailMaxServer], tmp_path: Path
) -> None:
    """S3: mbsync (Sync All, Create Both, Expunge Both) over STARTTLS: server folders and
    messages appear locally with their flags; a message saved in a new local folder and one
    added to an existing local folder reach the server; flags changed on either side reach
    the other; a message expunged on the server disappears locally; a third run is quiet."""
    server = mailmax_factory()
    deliver_by_smtp(server, "inbox one", "hello")
    deliver_by_smtp(server, "inbox two", "again")
    server.wait_for_mail(ALICE, 2)
    client = imap_login(server)
    try:
        assert client.create('"Archive/2024"')[0] == "OK"
        for subject, flags in (("old seen", "(\\Seen)"), ("old flagged", "(\\Flagged)")):
            data = f"From: carol@example.test\r\nSubject: {subject}\r\n\r\nold\r\n".encode()
            assert client.append('"Archive/2024"', flags, None, data)[0] == "OK"
    finally:
        client.logout()

    local = tmp_path / "mail"
    rcfile = write_mbsyncrc(tmp_path, server, local)
    code, log = run_mbsync(rcfile)
    assert code == 0, log
    assert "Connection is now encrypted" in log, log

    inbox, archive = local / "INBOX", local / "Archive" / "2024"
    assert len(local_messages(inbox)) == 2
    for name in ("Drafts", "Sent", "Trash", "Junk"):  # created for the user at first log-in
        assert (local / name / "cur").is_dir(), name
    assert find_local(archive, b"Subject: old seen").flags == "S"
    assert find_local(archive, b"Subject: old flagged").flags == "F"

    # the user works offline: reads and flags one message, files two new ones
    find_local(inbox, b"Subject: inbox one").with_flags("FS")
    write_local(
        local / "Offline",
        "1700000000.1_1.client",
        b"From: alice@example.test\nSubject: written offline\n\nin a new folder\n",
    )
    write_local(
        archive,
        "1700000001.1_2.client",
        b"From: alice@example.test\nSubject: filed offline\n\nin an old folder\n",
        letters="S",
    )
    # ...while on the server another client answers one message and expunges another
    client = imap_login(server)
    try:
        client.select("INBOX")
        _, data = client.search(None, "HEADER", "Subject", '"inbox two"')
        assert client.store(data[0].decode(), "+FLAGS", "(\\Answered)")[0] == "OK"
        client.select('"Archive/2024"')
        _, data = client.search(None, "HEADER", "Subject", '"old seen"')
        assert client.store(data[0].decode(), "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert client.expunge()[0] == "OK"
    finally:
        client.logout()

    code, log = run_mbsync(rcfile)
    assert code == 0, log

    client = imap_login(server)
    try:
        assert {"INBOX", "Archive/2024", "Offline"} <= server_folders(client)
        assert server_messages(client, "Offline") == {b"Subject: written offline": set()}
        assert server_messages(client, "Archive/2024") == {
            b"Subject: old flagged": {"\\Flagged"},
            b"Subject: filed offline": {"\\Seen"},
        }
        assert server_messages(client, "INBOX") == {
            b"Subject: inbox one": {"\\Flagged", "\\Seen"},
            b"Subject: inbox two": {"\\Answered"},
        }
        client.select("Offline", readonly=True)
        _, data = client.fetch("1", "(BODY.PEEK[TEXT])")
        assert _unix(data[0][1]) == b"in a new folder\n"
    finally:
        client.logout()
    assert find_local(inbox, b"Subject: inbox two").flags == "R"
    assert [m.read() for m in local_messages(archive) if b"Subject: old seen" in m.read()] == []
    assert len(local_messages(archive)) == 2
    assert len(server.messages(ALICE, "Offline")) == 1

    before = {m.path.name for folder in (inbox, archive) for m in local_messages(folder)}
    code, log = run_mbsync(rcfile)
    assert code == 0, log
    after = {m.path.name for folder in (inbox, archive) for m in local_messages(folder)}
    assert after == before
