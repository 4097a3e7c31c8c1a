"""Driving real mail clients (getmail6, mbsync) against a test server, and reading what they wrote.

The clients come from Debian packages that ``.ci/run`` installs; a missing one fails the test
loudly (never a skip). Everything a client needs (rc files, state, its Maildir) lives in the
test's temporary directory.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.server import USERS, MailMaxServer

#: Seconds a client run may take before the test fails.
CLIENT_TIMEOUT = 60
#: getmail refuses to deliver as root; it writes into its Maildir as this user.
GETMAIL_USER = "nobody"
#: How often a getmail run is tried when getmail itself crashes on its SIGCHLD race.
GETMAIL_ATTEMPTS = 3
#: What getmail's traceback says when a child's SIGCHLD comes before its handler is saved.
GETMAIL_SIGCHLD_RACE = "_ForkingBase__orig_handler"


def require_tool(name: str, package: str) -> str:
    """The path of a client program; fails the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package} (see .ci/run)")
    return path


def run_client(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a client to completion; return its exit code and everything it printed."""
    result = subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


# ---------------------------------------------------------------------- local Maildirs
@dataclass(frozen=True)
class LocalMessage:
    """A message file of a client's Maildir."""

    path: Path

    @property
    def subdir(self) -> str:
        """``new`` or ``cur``."""
        return self.path.parent.name

    @property
    def flags(self) -> str:
        """The Maildir info letters (``""`` when the name has none)."""
        _, sep, info = self.path.name.partition(":2,")
        return info if sep else ""

    def read(self) -> bytes:
        """The file's bytes."""
        return self.path.read_bytes()

    def with_flags(self, letters: str) -> LocalMessage:
        """Rename into ``cur/`` with new info letters, as a mail program does."""
        base = self.path.name.partition(":2,")[0]
        target = self.path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(letters))}"
        os.rename(self.path, target)
        return LocalMessage(target)


def local_messages(maildir: Path) -> list[LocalMessage]:
    """The messages in a Maildir folder (``new`` and ``cur``), sorted by file name."""
    found = []
    for sub in ("new", "cur"):
        directory = maildir / sub
        if directory.is_dir():
            found += [LocalMessage(p) for p in directory.iterdir() if not p.name.startswith(".")]
    return sorted(found, key=lambda m: m.path.name)


def find_local(maildir: Path, text: bytes) -> LocalMessage:
    """The one message of a Maildir folder containing ``text``."""
    matches = [m for m in local_messages(maildir) if text in m.read()]
    assert len(matches) == 1, f"{len(matches)} messages with {text!r} in {maildir}"
    return matches[0]


def write_local(maildir: Path, name: str, data: bytes, letters: str | None = None) -> Path:
    """Put a message into a local Maildir folder the way a mail program saves one."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    tmp = maildir / "tmp" / name
    tmp.write_bytes(data)
    target = maildir / "new" / name if letters is None else maildir / "cur" / f"{name}:2,{letters}"
    os.rename(tmp, target)
    return target


# ---------------------------------------------------------------------- the server side
def imap_login(server: MailMaxServer, user: str = "alice") -> imaplib.IMAP4_SSL:
    """An imaplib client logged in over IMAPS (certificate verified)."""
    client = imaplib.IMAP4_SSL(
        "localhost", server.ports["imaps"], ssl_context=server.ssl_context(), timeout=10
    )
    client.login(user, USERS[user])
    return client


def server_folders(client: imaplib.IMAP4) -> set[str]:
    """The names LIST "" "*" returns (quotes removed)."""
    status, lines = client.list('""', "*")
    assert status == "OK", lines
    names = set()
    for line in lines:
        assert isinstance(line, bytes), line
        name = line.rsplit(b' "/" ', 1)[1].decode()
        names.add(name[1:-1] if name.startswith('"') else name)
    return names


def server_messages(client: imaplib.IMAP4, folder: str) -> dict[bytes, set[str]]:
    """``{Subject header line: flags}`` of every message of a server folder (read-only)."""
    status, data = client.select(f'"{folder}"', readonly=True)
    assert status == "OK", data
    found: dict[bytes, set[str]] = {}
    if int(data[0]) == 0:
        return found
    status, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK", data
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, subject = item
        flags = head.split(b"FLAGS (", 1)[1].split(b")", 1)[0].decode().split()
        found[subject.strip()] = set(flags) - {"\\Recent"}
    return found


def deliver_by_smtp(server: MailMaxServer, subject: str, body: str) -> None:
    """bob sends alice a message through the server's SMTP listener."""
    with server.smtp() as smtp:
        smtp.sendmail(
            "bob@example.test",
            ["alice@example.test"],
            f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n"
            f"{body}\r\n",
        )


# ---------------------------------------------------------------------- getmail6
@contextlib.contextmanager
def getmail_maildir() -> Iterator[Path]:
    """An empty Maildir getmail may write into, removed afterwards.

    getmail delivers as :data:`GETMAIL_USER`, who cannot enter pytest's private temporary
    directories, so the Maildir lives in its own directory under the system's temporary one,
    owned by that user.
    """
    entry = pwd.getpwnam(GETMAIL_USER)
    top = Path(tempfile.mkdtemp(prefix="mailmax-getmail-"))
    try:
        maildir = top / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        for directory in (top, maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        yield maildir
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_getmail(
    work: Path,
    server: MailMaxServer,
    destination: Path,
    *,
    ca_certs: Path,
    read_all: bool,
    mailboxes: tuple[str, ...] = ("INBOX",),
) -> tuple[int, str]:
    """One getmail run: IMAPS (certificate pinned, host name checked) into ``destination``."""
    getmail = require_tool("getmail", "getmail6")
    home = work / "getmail-home"
    home.mkdir(exist_ok=True)
    rcfile = work / "getmailrc"
    rcfile.write_text(
        "[retriever]\n"
        "type = SimpleIMAPSSLRetriever\n"
        "server = 127.0.0.1\n"
        f"port = {server.ports['imaps']}\n"
        "username = alice\n"
        f"password = {USERS['alice']}\n"
        f"mailboxes = {mailboxes!r}\n"
        f"ca_certs = {ca_certs}\n"
        "ssl_cert_hostname = localhost\n"
        "\n[destination]\n"
        "type = Maildir\n"
        f"path = {destination}/\n"
        f"user = {GETMAIL_USER}\n"
        "\n[options]\n"
        f"read_all = {read_all}\n"
        "delete = false\n"
        "verbose = 2\n"
    )
    rcfile.chmod(0o600)
    for _ in range(GETMAIL_ATTEMPTS - 1):
        code, log = run_client([getmail, f"--getmaildir={home}", f"--rcfile={rcfile}"])
        if code == 0 or GETMAIL_SIGCHLD_RACE not in log:
            return code, log
        # getmail's own race (a SIGCHLD before it has saved the old handler) ended the run
        # part-way: start again from nothing, so the run's results stay whole.
        for stale in [*home.glob("oldmail-*"), *destination.glob("*/*")]:
            stale.unlink()
    return run_client([getmail, f"--getmaildir={home}", f"--rcfile={rcfile}"])


# ---------------------------------------------------------------------- mbsync (isync)
def write_mbsyncrc(work: Path, server: MailMaxServer, local: Path) -> Path:
    """An mbsync configuration syncing every folder both ways over STARTTLS."""
    local.mkdir(parents=True, exist_ok=True)
    rcfile = work / "mbsyncrc"
    rcfile.write_text(
        "IMAPAccount mailmax\n"
        "Host localhost\n"
        f"Port {server.ports['imap']}\n"
        "User alice\n"
        f"Pass {USERS['alice']}\n"
        "SSLType STARTTLS\n"
        f"CertificateFile {server.cert_path}\n"
        "Timeout 10\n"
        "\nIMAPStore far\n"
        "Account mailmax\n"
        "\nMaildirStore near\n"
        f"Path {local}/\n"
        f"Inbox {local}/INBOX\n"
        "SubFolders Verbatim\n"
        "\nChannel mailmax\n"
        "Far :far:\n"
        "Near :near:\n"
        "Patterns *\n"
        "Create Both\n"
        "Remove None\n"
        "Expunge Both\n"
        "Sync All\n"
        "SyncState *\n"
    )
    rcfile.chmod(0o600)
    return rcfile


def run_mbsync(rcfile: Path) -> tuple[int, str]:
    """One verbose ``mbsync`` run of the channel."""
    mbsync = require_tool("mbsync", "isync")
    return run_client([mbsync, "-c", str(rcfile), "-V", "mailmax"])
