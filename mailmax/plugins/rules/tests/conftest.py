"""Fixtures of the rules tests: one real server per test module, with an IMAP listener, a
loopback SMTP sink as its smart host, and programs on the rules' allow-list."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailmax.testing import DOMAIN, TestServer, start_server
from tests.fixtures.ports import free_port
from tests.fixtures.smtp_sink import SMTPSink, smtp_sink

#: Users each test module may use for its own rules, besides alice and bob.
USERS = ("carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy", "kate")

#: %F: record each file's name and decoded text; remove those that say "virus".
CHECK_FILES = """
import pathlib, sys
folder, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with out.open("a") as log:
    for path in sorted(folder.iterdir()):
        text = path.read_bytes().decode("utf-8", "replace")
        log.write(f"{path.name}\\t{text.strip()}\\n")
        if "virus" in text:
            path.unlink()
print("checked", len(list(folder.iterdir())), "left")
"""
#: %M: remove the message when it says X-Kill: yes.
CHECK_MESSAGE = """
import pathlib, sys
message = pathlib.Path(sys.argv[1])
if b"X-Kill: yes" in message.read_bytes():
    message.unlink()
"""
#: An action: append the message's Subject line to a file.
RECORD = """
import pathlib, sys
lines = pathlib.Path(sys.argv[1]).read_bytes().decode().splitlines()
subject = next(line for line in lines if line.startswith("Subject:"))
with open(sys.argv[2], "a") as out:
    out.write(subject + "\\n")
print("recorded", subject)
"""


@dataclass
class World:
    """The server, the sink, and the programs the rules may run."""

    server: TestServer
    sink: SMTPSink
    programs: dict[str, str]
    out: Path


def _program(folder: Path, name: str, source: str) -> str:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A running server whose rules may run the test programs; remote mail goes to a sink."""
    base = tmp_path_factory.mktemp("rules")
    (base / "bin").mkdir()
    (base / "out").mkdir()
    (base / "replies").mkdir()
    (base / "replies" / "away.txt").write_text("Out of the office (from a file).\n")
    programs = {
        "check-files": _program(base / "bin", "check-files", CHECK_FILES),
        "check-message": _program(base / "bin", "check-message", CHECK_MESSAGE),
        "record": _program(base / "bin", "record", RECORD),
    }
    # a port away from the start of the range other test servers take theirs from
    port = free_port(lo=20000 + random.randrange(15000))
    with smtp_sink(base / "sink", port=port) as sink:
        server = start_server(
            base / "server",
            plugins=["aliases", "forwarding", "rules", "routing"],
            settings={
                "rules": {
                    "allowed_programs": list(programs.values()),
                    "time_zone": "UTC",
                    "refresh_seconds": 0,
                    "program_timeout": 20,
                    "reply_folder": str(base / "replies"),
                },
                "routing": {"smart_host_enabled": True, "smart_host": f"127.0.0.1:{sink.port}"},
            },
            sections={
                "listeners": [
                    {
                        "service": "smtp",
                        "address": "127.0.0.1",
                        "port": 0,
                        "default_domain": DOMAIN,
                    },
                    {"service": "imap", "address": "127.0.0.1", "port": 0},
                ],
                "imap": {"allow_plaintext_auth": True},
            },
        )
        try:
            with server.directory() as directory:
                for name in USERS:
                    directory.add_user(f"{name}@{DOMAIN}", f"{name}secret")
            yield World(server, sink, programs, base / "out")
        finally:
            server.stop()
