"""What the rules tests share: messages, an IMAP look at a mailbox, the rule CLI."""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import time
from email.message import EmailMessage
from typing import Any

from click.testing import CliRunner, Result

from mailmax.core.cli.main import cli as main_cli
from mailmax.testing import TestServer


def password(user: str) -> str:
    """The test password of ``user`` (``alice@...``: ``alicesecret``)."""
    return user.partition("@")[0] + "secret"


def message(
    subject: str,
    body: str = "hello",
    *,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    """A message; ``attachments`` are ``(file name, MIME type, content)``."""
    msg = EmailMessage()
    msg["From"] = "joe@sender.test"
    msg["To"] = "someone@example.test"
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, mime, content in attachments:
        main, sub = mime.split("/")
        msg.add_attachment(content, maintype=main, subtype=sub, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


def send(server: TestServer, to: str, data: bytes, sender: str = "joe@sender.test") -> None:
    """Send ``data`` to ``to`` over SMTP (refused recipients fail the test)."""
    with server.smtp() as client:
        assert client.sendmail(sender, [to], data) == {}


def imap_message(server: TestServer, user: str, folder: str, subject: str) -> EmailMessage:
    """The message with ``subject`` in ``folder``, fetched whole over IMAP."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    try:
        client.login(user, password(user))
        client.select(f'"{folder}"', readonly=True)
        _, found = client.search(None, "SUBJECT", f'"{subject}"')
        (number,) = found[0].split()
        _, data = client.fetch(number, "(BODY.PEEK[])")
        parsed = email.message_from_bytes(data[0][1], policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed
    finally:
        client.logout()


def cli(server: TestServer, *args: str) -> Result:
    """``mailmax --config <server's config> ARGS``, run in this process."""
    return CliRunner().invoke(main_cli, ["--config", str(server.config_path), *args])


def rule(server: TestServer, *args: str) -> Any:
    """``mailmax rule ARGS --json`` (which must succeed), parsed."""
    result = cli(server, "rule", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add(server: TestServer, name: str, where: list[str], ifs: list[str], thens: list[str]) -> Any:
    """Add a rule with ``mailmax rule add``; its record."""
    args = [f"--if={c}" for c in ifs] + [f"--then={a}" for a in thens]
    return rule(server, "add", name, *where, *args)["object"]


def imap_folders(server: TestServer, user: str) -> dict[str, list[str]]:
    """Every folder of ``user`` that holds mail, with its subjects, read over IMAP."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    try:
        client.login(user, password(user))
        _, listed = client.list()
        names = [line.decode().rsplit(" ", 1)[-1].strip('"') for line in listed if line]
        out = {}
        for name in names:
            client.select(f'"{name}"', readonly=True)
            _, found = client.search(None, "ALL")
            subjects = []
            for number in found[0].split():
                _, data = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                header = email.message_from_bytes(data[0][1], policy=email.policy.default)
                subjects.append(str(header["Subject"]))
            if subjects:
                out[name] = sorted(subjects)
        return out
    finally:
        client.logout()


def wait_count(server: TestServer, user: str, count: int, timeout: float = 15) -> dict:
    """Wait until ``user``'s folders hold ``count`` messages in all; the folders."""
    deadline = time.monotonic() + timeout
    while True:
        folders = imap_folders(server, user)
        if sum(len(v) for v in folders.values()) >= count:
            return folders
        if time.monotonic() > deadline:
            raise AssertionError(f"{user} has fewer than {count} messages: {folders}")
        time.sleep(0.1)


def delivered(server: TestServer, queue_hint: str, timeout: float = 10) -> str:
    """Wait for the mail log line of a delivery whose line has ``queue_hint``; the line."""
    return server.wait_for(
        lambda: next(
            (
                line
                for line in server.log_text().splitlines()
                if "delivery " in line and queue_hint in line and "result=" in line
            ),
            "",
        ),
        timeout,
        f"a delivery log line with {queue_hint}",
    )
