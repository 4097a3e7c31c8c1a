"""The tarpit over real SMTP: a client trying unknown recipients is slowed down, cut off
and blocked (also after a restart), and never slows another client."""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.testing import TestServer, start_server

DELAY = 2.0


class Client:
    """A line-by-line SMTP client on a real socket, bound to a loopback address."""

    def __init__(self, server: TestServer, source: str, listener: str = "127.0.0.1") -> None:
        items = json.loads((server.data_dir / "run" / "ports.json").read_text())
        port = next(i["port"] for i in items if i.get("address", "127.0.0.1") == listener)
        self.sock = socket.create_connection(
            (listener, port), timeout=20, source_address=(source, 0)
        )
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        """The next (last line of the) reply."""
        while True:
            line = self.file.readline().decode()
            if not line or line[3:4] != "-":
                return line.strip()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def command(self, line: str) -> str:
        self.send(line)
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestServer]:
    started = start_server(
        tmp_path / "tarpit",
        plugins=["aliases", "tarpit"],
        settings={
            "tarpit": {
                "trigger": 2,
                "delay": DELAY,
                "max_delay": DELAY,
                "disconnect_after": 4,
                "block_minutes": 30,
            }
        },
    )
    yield started
    started.stop()


def test_tarpitted_client_is_slowed_cut_off_and_blocked_without_slowing_others(
    server: TestServer,
) -> None:
    spammer = Client(server, "127.0.0.20")
    assert spammer.reply().startswith("220")
    assert spammer.command("EHLO spam.test").startswith("250")
    assert spammer.command("MAIL FROM:<x@spam.test>").startswith("250")
    assert spammer.command("RCPT TO:<nobody1@example.test>").startswith("550 5.1.1")

    asked = time.monotonic()
    spammer.send("RCPT TO:<nobody2@example.test>")  # the second: held DELAY seconds
    # Meanwhile another client's whole session goes through at once.
    other = Client(server, "127.0.0.21")
    assert other.reply().startswith("220")
    for line in ("EHLO good.test", "MAIL FROM:<ann@good.test>", "RCPT TO:<alice@example.test>"):
        assert other.command(line).startswith("250")
    assert other.command("DATA").startswith("354")
    assert other.command("Subject: hi\r\n\r\nhello\r\n.").startswith("250")
    assert other.command("QUIT").startswith("221")
    assert time.monotonic() - asked < DELAY * 0.75, "the other client was slowed down"
    other.close()

    assert spammer.reply().startswith("550 5.1.1")
    assert time.monotonic() - asked >= DELAY * 0.9
    assert spammer.command("RCPT TO:<nobody3@example.test>").startswith("550 5.1.1")
    assert spammer.command("RCPT TO:<nobody4@example.test>") == (
        "421 4.7.1 Too many unknown recipients, closing connection"
    )
    assert spammer.file.readline() == b""  # closed
    spammer.close()
    assert server.wait_for_mail("alice@example.test")

    def greeting(source: str) -> str:
        client = Client(server, source)
        try:
            return client.reply()
        finally:
            client.close()

    assert greeting("127.0.0.20").startswith("421 4.7.1 Client host [127.0.0.20] blocked for 30")
    assert greeting("127.0.0.21").startswith("220")
    server.stop()
    server.start()
    assert greeting("127.0.0.20").startswith("421 4.7.1 Client host [127.0.0.20] blocked")
    # The block is a ban the admin sees and lifts like any other.
    listed = json.loads(server.cli("ban", "list", "--json").stdout)
    rows = listed if isinstance(listed, list) else listed["object"]
    block = next(row for row in rows if row["pattern"] == "127.0.0.20")
    assert block["cause"] == "tarpit" and block["kind"] == "client"
    assert "4 unknown recipients" in block["reason"] and block["expires_at"]
    lifted = server.cli("ban", "delete", "127.0.0.20")
    assert "127.0.0.20" in lifted.stdout + lifted.stderr
    deadline = time.monotonic() + 10
    while greeting("127.0.0.20").startswith("421") and time.monotonic() < deadline:
        time.sleep(0.5)  # the server re-reads a block it knows within two seconds
    assert greeting("127.0.0.20").startswith("220")
    assert server.cli("ban", "delete", "127.0.0.20", check=False).returncode != 0


def test_452_replies_do_not_count_and_a_listener_without_the_tarpit(tmp_path: Path) -> None:
    """Recipients over the limit get 452 and never count; on the listener where the tarpit is
    off, unknown recipients are refused at once and nothing is blocked."""
    started = start_server(
        tmp_path / "limit",
        plugins=["aliases", "tarpit"],
        settings={
            "tarpit": {
                "trigger": 1,
                "delay": 30,
                "disconnect_after": 1,
                "listeners": {"127.0.0.2": {"enabled": False}},
            }
        },
        sections={
            "smtp": {"max_recipients": 1},
            "listeners": [
                {"service": "smtp", "address": address, "port": 0, "default_domain": "example.test"}
                for address in ("127.0.0.1", "127.0.0.2")
            ],
        },
    )
    try:
        client = Client(started, "127.0.0.22")
        assert client.reply().startswith("220")
        client.command("EHLO x.test")
        client.command("MAIL FROM:<a@x.test>")
        assert client.command("RCPT TO:<alice@example.test>").startswith("250")
        for _ in range(3):
            assert client.command("RCPT TO:<bob@example.test>").startswith("452")
        assert client.command("QUIT").startswith("221")
        client.close()

        untarpitted = Client(started, "127.0.0.23", listener="127.0.0.2")
        assert untarpitted.reply().startswith("220")
        untarpitted.command("EHLO x.test")
        untarpitted.command("MAIL FROM:<a@x.test>")
        asked = time.monotonic()
        for n in range(5):
            assert untarpitted.command(f"RCPT TO:<nobody{n}@example.test>").startswith("550")
        assert time.monotonic() - asked < 5
        assert untarpitted.command("QUIT").startswith("221")
        untarpitted.close()
        again = Client(started, "127.0.0.23")
        assert again.reply().startswith("220")
        again.close()
    finally:
        started.stop()


def test_reload_with_new_settings_under_load_drops_nothing(server: TestServer) -> None:
    """Clients keep sending while the tarpit's settings change and the server reloads."""
    sent: list[str] = []
    errors: list[BaseException] = []

    def sender(worker: int) -> None:
        try:
            for n in range(8):
                subject = f"load-{worker}-{n}"
                with smtplib.SMTP(
                    "127.0.0.1", server.ports["smtp"], source_address=("127.0.0.24", 0)
                ) as smtp:
                    smtp.sendmail(
                        "ann@good.test",
                        ["alice@example.test"],
                        f"Subject: {subject}\r\n\r\nhi\r\n".encode(),
                    )
                sent.append(subject)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    server.wait_for(lambda: len(sent) >= 4)
    server.sections["plugins.settings.tarpit"]["trigger"] = 3
    server.write_config()
    assert server.reload().returncode == 0
    for worker in workers:
        worker.join(60)
    assert errors == [] and len(sent) == 32

    def stored() -> bool:
        found = [m for m in server.messages("alice@example.test") if b"Subject: load-" in m]
        return len(found) == 32

    server.wait_for(stored, timeout=30, what="32 messages stored")
