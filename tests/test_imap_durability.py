"""What an IMAP client was told is stored survives a crash of the server (kill -9 right after
the replies), and folders a session keeps open between commands follow renames made by other
sessions (S2, S3)."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable

import pytest

from tests.fixtures.server import DOMAIN, MailMaxServer


@pytest.fixture
def server(mailmax_factory: Callable[..., MailMaxServer]) -> MailMaxServer:
    listeners = [
        {"service": "imap", "address": "127.0.0.1", "port": 0, "default_domain": DOMAIN},
    ]
    return mailmax_factory(listeners=listeners, imap={"allow_plaintext_auth": True})


def login(server: MailMaxServer) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    client.login("alice", "alicesecret")
    return client


def message(number: int) -> bytes:
    return (
        f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: crash {number}\r\n\r\n"
        f"Body of message {number}.\r\n"
    ).encode()


def append(client: imaplib.IMAP4, folder: str, number: int, flags: str | None = None) -> int:
    status, data = client.append(folder, flags, None, message(number))
    assert status == "OK", data
    match = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[0])
    assert match, data
    return int(match.group(1))


def test_appended_and_flagged_messages_survive_kill_9(server: MailMaxServer) -> None:
    """S3: every APPEND answered OK and every flag a STORE reported is there after the server
    process is killed with SIGKILL right after the last reply and started again."""
    client = login(server)
    assert client.create("Archive")[0] == "OK"
    uids = {number: append(client, "INBOX", number) for number in range(12)}
    uids.update({number: append(client, "Archive", number, r"(\Seen)") for number in (12, 13)})
    client.select("INBOX")
    status, data = client.uid("STORE", f"{uids[3]},{uids[5]}", "+FLAGS", r"(\Flagged $Label1)")
    assert status == "OK", data
    assert all(b"\\Flagged" in line and b"$Label1" in line for line in data), data
    last = append(client, "INBOX", 99)
    server.kill()  # no logout, no graceful stop: the process dies here

    server.start()
    client = login(server)
    status, data = client.select("INBOX")
    assert (status, data) == ("OK", [b"13"])
    status, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert status == "OK"
    found = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            found[uid] = (item[0], item[1])
    for number in [*range(12), 99]:
        uid = last if number == 99 else uids[number]
        head, body = found[uid]
        assert body == message(number)
        flagged = number in (3, 5)
        assert (b"\\Flagged" in head and b"$Label1" in head) == flagged, head
    status, data = client.select("Archive")
    assert (status, data) == ("OK", [b"2"])
    status, data = client.uid("FETCH", f"{uids[12]},{uids[13]}", "(FLAGS)")
    assert status == "OK" and all(b"\\Seen" in line for line in data), data
    client.logout()


def test_kept_folder_follows_a_rename_by_another_session(server: MailMaxServer) -> None:
    """S3: after another session renames a folder this session appended to, and creates a
    new folder of the same name, the next APPEND lands in the new folder."""
    first = login(server)
    assert first.create("Drafts2")[0] == "OK"
    append(first, "Drafts2", 1)
    other = login(server)
    assert other.rename("Drafts2", "Old")[0] == "OK"
    status, data = first.append("Drafts2", None, None, message(2))
    assert status == "NO" and b"TRYCREATE" in data[0], data
    assert other.create("Drafts2")[0] == "OK"
    append(first, "Drafts2", 3)
    assert other.select("Old") == ("OK", [b"1"])
    assert other.select("Drafts2") == ("OK", [b"1"])
    status, data = other.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == message(3)
    first.logout()
    other.logout()
