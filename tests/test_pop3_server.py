"""POP3 over real sockets with Python's poplib: STLS, pop3s, APOP, RETR, UIDL, locks (S2)."""

from __future__ import annotations

import hashlib
import poplib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.store.lock import LOCK_NAME, MailboxLock, clear_lock
from mailmax.core.store.mailbox import MailStore
from tests.fixtures.ports import wait_until
from tests.pop3_support import DOMAIN, PASSWORDS, POP3Process

MSG1 = b"From: a@example.test\r\nSubject: one\r\n\r\nfirst body\r\n"
MSG2 = (
    b"From: b@example.test\r\nSubject: two\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[POP3Process]:
    process = POP3Process(tmp_path_factory.mktemp("pop3"))
    process.prepare()
    process.start()
    try:
        yield process
    finally:
        process.stop()


_users = iter(range(1, 10_000))


def new_user(server: POP3Process, *, keep_clear: bool = True) -> tuple[str, str]:
    """A fresh user of example.test with an empty mailbox: (name, password)."""
    name, password = f"user{next(_users)}", "pw secret 1"
    directory = SQLDirectory.open(server.db_url)
    try:
        directory.add_user(f"{name}@{DOMAIN}", password, keep_clear=keep_clear)
    finally:
        directory.close()
    return name, password


def tls_context(server: POP3Process) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def plain(server: POP3Process) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)


def secure(server: POP3Process) -> poplib.POP3_SSL:
    return poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], context=tls_context(server), timeout=10
    )


def login(server: POP3Process, name: str, password: str) -> poplib.POP3_SSL:
    client = secure(server)
    client.user(name)
    client.pass_(password)
    return client


def test_greeting_capa_and_plaintext_refused(server: POP3Process) -> None:
    """S2: the greeting carries an APOP timestamp; USER is refused before STLS (security)."""
    client = plain(server)
    try:
        greeting = client.getwelcome().decode()
        assert re.fullmatch(
            r"\+OK mail\.example\.test POP3 MailMax ready <\d+\.\d+\.\d+@mail\.example\.test>",
            greeting,
        )
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        assert caps["IMPLEMENTATION"] == ["MailMax"]
        for name in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"):
            assert name in caps
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\].*STLS"):
            client.user("alice")
        with pytest.raises(poplib.error_proto, match="not allowed now"):
            client.stat()
    finally:
        client.quit()


def test_stls_then_login_and_retrieve(server: POP3Process) -> None:
    """S2: STLS with a verified certificate, then USER/PASS, STAT, LIST, RETR, TOP, UIDL."""
    name, password = new_user(server)
    server.deliver(name, MSG1, MSG2)
    client = plain(server)
    try:
        client.stls(tls_context(server))
        caps = client.capa()
        assert "USER" in caps and caps["SASL"] == ["PLAIN"] and "STLS" not in caps
        assert client.user(name).startswith(b"+OK")
        assert client.pass_(password) == (
            f"+OK {name}@{DOMAIN} has 2 message(s) ({len(MSG1) + len(MSG2)} octets)".encode()
        )
        assert client.stat() == (2, len(MSG1) + len(MSG2))
        _, listing, _ = client.list()
        assert listing == [b"1 %d" % len(MSG1), b"2 %d" % len(MSG2)]
        assert client.list(2) == b"+OK 2 %d" % len(MSG2)
        _, lines, _ = client.retr(2)
        assert b"\r\n".join(lines) + b"\r\n" == MSG2
        _, top, _ = client.top(2, 1)
        assert top == [b"From: b@example.test", b"Subject: two", b"", b".starts with a dot"]
        _, top0, _ = client.top(1, 0)
        assert top0 == [b"From: a@example.test", b"Subject: one", b""]
        _, uidls, _ = client.uidl()
        assert len(uidls) == 2 and uidls[0].split()[0] == b"1"
        assert client.uidl(1) == b"+OK " + uidls[0]
        assert "STLS" not in client.capa()
    finally:
        client.quit()


def test_pop3s_login_name_forms_and_record(server: POP3Process) -> None:
    """A11, S5: user, user@domain, user%domain, domain/user all log in; the login is recorded."""
    name, password = new_user(server)
    for form in (name, f"{name}@{DOMAIN}", f"{name}%{DOMAIN}", f"{DOMAIN}/{name}", name.upper()):
        client = login(server, form, password)
        assert client.stat() == (0, 0)
        client.quit()
    directory = SQLDirectory.open(server.db_url)
    try:
        # Log-in records are written in batches, a moment after the log-ins.
        wait_until(lambda: directory.last_login(f"{name}@{DOMAIN}"), 5, "login record")
        service, ip, when = directory.last_login(f"{name}@{DOMAIN}")
    finally:
        directory.close()
    assert (service, ip) == ("pop3", "127.0.0.1")
    assert time.time() - when < 60


def test_sasl_plain(server: POP3Process) -> None:
    """S2: AUTH PLAIN with an initial response and with a continuation."""
    import base64

    name, password = new_user(server)
    token = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
    client = secure(server)
    try:
        assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
        assert client.stat() == (0, 0)
    finally:
        client.quit()
    client = secure(server)
    try:
        assert client._shortcmd("AUTH PLAIN") == b"+ "
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client._shortcmd(base64.b64encode(f"\0{name}\0wrong".encode()).decode())
        with pytest.raises(poplib.error_proto, match="Malformed"):
            client._shortcmd("AUTH PLAIN !!!")
        with pytest.raises(poplib.error_proto, match="Unrecognized"):
            client._shortcmd("AUTH CRAM-MD5")
    finally:
        client.quit()


def test_apop(server: POP3Process) -> None:
    """S2, A6: APOP with the digest computed from the greeting; refused without a clear copy."""
    name, password = new_user(server)
    server.deliver(name, MSG1)
    client = plain(server)
    try:
        assert client.apop(name, password).startswith(b"+OK")
        assert client.stat() == (1, len(MSG1))
    finally:
        client.quit()
    client = plain(server)
    try:
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] APOP failed"):
            client.apop(name, "wrong password")
    finally:
        client.quit()
    hashed_only, password2 = new_user(server, keep_clear=False)
    client = plain(server)
    try:
        with pytest.raises(poplib.error_proto, match="no clear-text password is kept"):
            client.apop(hashed_only, password2)
        stamp = re.search(rb"<.*>", client.getwelcome()).group()
        digest = hashlib.md5(stamp + b"x").hexdigest()
        with pytest.raises(poplib.error_proto, match="Syntax"):
            client._shortcmd(f"APOP {name} {digest[:-1]}")
    finally:
        client.quit()


def test_alice_clear_password_with_space(server: POP3Process) -> None:
    """A6: a password with a space works with PASS (the rest of the line) and APOP."""
    client = login(server, "alice", PASSWORDS["alice"])
    client.quit()
    client = plain(server)
    assert client.apop("alice", PASSWORDS["alice"]).startswith(b"+OK")
    client.quit()


def test_dele_rset_quit(server: POP3Process) -> None:
    """S2: DELE marks, RSET unmarks, QUIT removes; a dropped connection removes nothing."""
    name, password = new_user(server)
    server.deliver(name, MSG1, MSG2, MSG1)
    client = login(server, name, password)
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="Message 1 is deleted"):
        client.retr(1)
    assert client.stat() == (2, len(MSG2) + len(MSG1))
    client.rset()
    assert client.stat()[0] == 3
    client.dele(2)
    client.close()  # no QUIT: nothing is removed
    time.sleep(0.2)
    client = login(server, name, password)
    assert client.stat()[0] == 3
    client.dele(2)
    assert client.quit().startswith(b"+OK MailMax POP3 server signing off (1 messages deleted)")
    client = login(server, name, password)
    _, listing, _ = client.list()
    assert listing == [b"1 %d" % len(MSG1), b"2 %d" % len(MSG1)]
    client.quit()
    assert (
        len(list((server.maildir(name) / "new").iterdir()))
        + len(list((server.maildir(name) / "cur").iterdir()))
        == 2
    )


def test_malformed_arguments_never_disconnect(server: POP3Process) -> None:
    """S2: every malformed command gets -ERR and the session goes on."""
    name, password = new_user(server)
    server.deliver(name, MSG1)
    client = login(server, name, password)
    bad = [
        "RETR",
        "RETR abc",
        "RETR 0",
        "RETR 2",
        "RETR -1",
        "RETR 1 2",
        "LIST x",
        "LIST 99999999999",
        "TOP 1",
        "TOP 1 x",
        "TOP x 1",
        "DELE",
        "UIDL 7",
        "STAT 1",
        "FOO",
        "USER x",
        "STLS",
        "X" * 5000,
        "RETR \x01",
    ]
    for command in bad:
        with pytest.raises(poplib.error_proto, match="-ERR"):
            client._shortcmd(command)
    assert client.noop() == b"+OK"
    assert client.stat() == (1, len(MSG1))
    client.quit()


def test_pipelining_answers_in_order(server: POP3Process) -> None:
    """S2 (PIPELINING): commands sent in one packet are answered in order."""
    name, password = new_user(server)
    server.deliver(name, MSG1, MSG2)
    raw = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=10)
    conn = tls_context(server).wrap_socket(raw, server_hostname="localhost")
    reader = conn.makefile("rb")
    try:
        assert reader.readline().startswith(b"+OK")
        conn.sendall(
            f"USER {name}\r\nPASS {password}\r\nSTAT\r\nRETR 1\r\nLIST 2\r\nQUIT\r\n".encode()
        )
        replies = [reader.readline() for _ in range(4)]
        assert replies[0].startswith(b"+OK Send PASS")
        assert replies[1].startswith(b"+OK " + name.encode())
        assert replies[2] == b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
        assert replies[3] == b"+OK %d octets\r\n" % len(MSG1)
        body = b""
        while not body.endswith(b"\r\n.\r\n"):
            body += reader.readline()
        assert body == MSG1 + b".\r\n"
        assert reader.readline() == b"+OK 2 %d\r\n" % len(MSG2)
        assert reader.readline().startswith(b"+OK MailMax POP3 server signing off")
    finally:
        conn.close()


def test_stls_discards_pipelined_input(server: POP3Process) -> None:
    """S2 (RFC 2595): a command smuggled behind STLS in the same packet is not executed."""
    name, password = new_user(server)
    raw = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=10)
    reader = raw.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    raw.sendall(f"STLS\r\nUSER {name}\r\nPASS {password}\r\n".encode())
    assert reader.readline() == b"+OK Begin TLS negotiation\r\n"
    conn = tls_context(server).wrap_socket(raw, server_hostname="localhost")
    tls_reader = conn.makefile("rb")
    try:
        conn.sendall(b"STAT\r\n")
        assert tls_reader.readline().startswith(b"-ERR STAT is not allowed now")
        conn.sendall(b"STLS\r\n")
        assert tls_reader.readline().startswith(b"-ERR Command not permitted when TLS active")
    finally:
        conn.close()


def _raw_retr(server: POP3Process, name: str, password: str, number: int) -> bytes:
    """RETR over pop3s, undoing the dot-stuffing by hand: the exact bytes sent."""
    raw = socket.create_connection(("127.0.0.1", server.ports["pop3s"]), timeout=30)
    conn = tls_context(server).wrap_socket(raw, server_hostname="localhost")
    reader = conn.makefile("rb")
    try:
        reader.readline()
        conn.sendall(f"USER {name}\r\nPASS {password}\r\nRETR {number}\r\n".encode())
        reader.readline()
        assert reader.readline().startswith(b"+OK")
        status = reader.readline()
        assert status.startswith(b"+OK"), status
        lines = []
        while True:
            line = reader.readline()
            assert line, "connection closed in the middle of a message"
            if line == b".\r\n":
                break
            lines.append(line[1:] if line.startswith(b".") else line)
        conn.sendall(b"QUIT\r\n")
        # the mailbox is free again once QUIT is answered, so the next session may open it
        assert reader.readline().startswith(b"+OK")
        return b"".join(lines)
    finally:
        conn.close()


def test_retr_is_byte_exact_small_and_huge(server: POP3Process) -> None:
    """S2: RETR sends the stored bytes, dot-stuffed correctly wherever the dots fall."""
    name, password = new_user(server)
    chunk = 256 * 1024
    line = b"x" * 998 + b"\r\n"
    huge = bytearray(b"Subject: huge\r\n\r\n")
    while len(huge) < 6 * chunk:
        huge += line
    for boundary in (chunk, 2 * chunk, 3 * chunk + 1, 4 * chunk - 1):
        huge[boundary - 2 : boundary + 3] = b"\r\n.x."  # dots around the chunk edges
    huge += b".\r\n..\r\n.last"  # a bare "." line, and no final line end
    no_final_crlf = b"Subject: n\r\n\r\nno newline at the end"
    server.deliver(name, MSG2, bytes(huge), no_final_crlf)
    assert _raw_retr(server, name, password, 1) == MSG2
    assert _raw_retr(server, name, password, 2) == bytes(huge) + b"\r\n"
    assert _raw_retr(server, name, password, 3) == no_final_crlf + b"\r\n"
    client = login(server, name, password)
    _, lines, _ = client.retr(2)
    assert len(b"\r\n".join(lines)) == len(huge)
    _, top, _ = client.top(2, 2)
    assert top == [b"Subject: huge", b"", line[:-2], line[:-2]]
    client.quit()


def test_uidl_stable_across_restart(server: POP3Process) -> None:
    """S2: UIDL values stay the same for the same messages after a server restart."""
    name, password = new_user(server)
    server.deliver(name, MSG1, MSG2)
    client = login(server, name, password)
    _, before, _ = client.uidl()
    client.quit()
    server.stop()
    server.start()
    server.deliver(name, MSG1)
    client = login(server, name, password)
    _, after, _ = client.uidl()
    client.quit()
    assert after[:2] == before
    assert len({u.split()[1] for u in after}) == 3


def test_second_session_gets_in_use(server: POP3Process) -> None:
    """S2, A12: one POP3 session per mailbox; the second gets [IN-USE] until the first quits."""
    name, password = new_user(server)
    first = login(server, name, password)
    second = secure(server)
    second.user(name)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(password)
    info = (server.maildir(name) / LOCK_NAME).read_text()
    assert '"service": "pop3"' in info and '"pid"' in info
    first.quit()
    second.user(name)
    assert second.pass_(password).startswith(b"+OK")
    second.quit()
    assert not (server.maildir(name) / LOCK_NAME).exists()


def test_ghost_lock_cleared_by_unlock(server: POP3Process) -> None:
    """A12: a lock held by a hung session blocks logins until `unlock` clears it."""
    name, password = new_user(server)
    root = server.maildir(name)
    ghost = MailboxLock.acquire(root)
    try:
        client = secure(server)
        client.user(name)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            client.pass_(password)
        assert clear_lock(root) is not None
        client.user(name)
        assert client.pass_(password).startswith(b"+OK")
        client.quit()
    finally:
        ghost.release()


def test_crash_leaves_no_lock(server: POP3Process) -> None:
    """A12: a session cut off by a server crash does not keep the mailbox locked."""
    name, password = new_user(server)
    client = login(server, name, password)
    server.kill()
    client.close()
    server.start()
    client = login(server, name, password)
    client.quit()


def test_message_removed_by_another_session(server: POP3Process) -> None:
    """S2: a message expunged by an IMAP session meanwhile gives -ERR, not a broken session."""
    name, password = new_user(server)
    server.deliver(name, MSG1, MSG2)
    client = login(server, name, password)
    with MailStore(server.maildir(name), fsync=False).open() as folder:
        folder.expunge([1])
        folder.set_flags([2], ["\\Seen"])
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        client.retr(1)
    _, lines, _ = client.retr(2)
    assert b"\r\n".join(lines) + b"\r\n" == MSG2
    client.dele(1)
    assert client.quit().startswith(b"+OK")


def test_new_mail_appears_at_next_login(server: POP3Process) -> None:
    """S2: the maildrop is the snapshot taken at login; new mail shows at the next login."""
    name, password = new_user(server)
    server.deliver(name, MSG1)
    client = login(server, name, password)
    server.deliver(name, MSG2)
    assert client.stat()[0] == 1
    client.quit()
    client = login(server, name, password)
    assert client.stat()[0] == 2
    client.quit()


def test_large_mailbox_listing(server: POP3Process, tmp_path: Path) -> None:
    """S2: a 3000-message mailbox logs in, lists and retrieves quickly."""
    name, password = new_user(server)
    root = server.maildir(name)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3000):
        (root / "new" / f"{1_700_000_000 + i}.M{i:06d}P9Q{i}.h,S={len(MSG1)}").write_bytes(MSG1)
    start = time.monotonic()
    client = login(server, name, password)
    assert client.stat() == (3000, 3000 * len(MSG1))
    _, uidls, _ = client.uidl()
    assert len(uidls) == 3000
    for number in range(1, 201):
        client.retr(number)
    client.quit()
    assert time.monotonic() - start < 20
