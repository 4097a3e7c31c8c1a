"""The plugin set keeps each hook's plugins and settings per scope; a change still shows.

Over real SMTP (a real ``twistd mailmax``): once a recipient's scope was resolved (and kept),
a domain or user setting changed with ``mailmax plugin set|enable|disable`` applies to the next
session without a reload, both to a RCPT hook and to a data hook, and only in its scope.
"""

from __future__ import annotations

import textwrap
import time
from email import message_from_bytes
from typing import Any

import pytest

from mailmax.testing import DOMAIN, TestServer, start_server

ALICE, BOB = f"alice@{DOMAIN}", f"bob@{DOMAIN}"

#: Refuses recipients when told to, and stamps its setting ``word`` on each copy.
STAMP = textwrap.dedent(
    """
    from mailmax.plugin import Field, PluginSettings, hookimpl, reject

    SCOPES = ("system", "domain", "user")


    class Settings(PluginSettings):
        word: str = Field("system", description="Stamped on each message.")
        refuse: bool = Field(False, description="Refuse every recipient.")


    @hookimpl
    def mailmax_rcpt_to(recipient, config):
        if config.refuse:
            return reject(f"{recipient.address} refused by stamp", 550, "5.7.1")
        return None


    @hookimpl
    def mailmax_data(changes, config):
        changes.add_header("X-Stamp", config.word)
        return None
    """
)

#: Longest wait for a directory change to reach the running server (it re-reads every 0.25 s).
LIVE_WITHIN = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server with the stamp plugin on system-wide."""
    server = start_server(
        tmp_path_factory.mktemp("scopecache"),
        plugins=["stamp"],
        plugin_files={"stamp.py": STAMP},
    )
    yield server
    server.stop()


def send(server: TestServer, to: str) -> tuple[int, str]:
    """One new session sending one message to ``to``: the RCPT reply (code, text)."""
    with server.smtp() as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        code, text = client.rcpt(to)
        if code == 250:
            client.data(b"Subject: hello\r\n\r\nHello.\r\n")
        return code, text.decode()


def stamp_of(server: TestServer, to: str) -> str | None:
    """Send one message to ``to`` and return the X-Stamp header it was stored with."""
    before = len(server.messages(to))
    code, text = send(server, to)
    assert code == 250, text
    stored = server.wait_for_mail(to, before + 1)[-1]
    return message_from_bytes(stored)["X-Stamp"]


def until(check: Any, what: str) -> float:
    """Seconds until ``check()`` holds, each try a new session; fails after LIVE_WITHIN."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > LIVE_WITHIN:
            raise AssertionError(f"not live within {LIVE_WITHIN} s: {what}")
    return time.monotonic() - started


def test_a_domain_setting_reaches_the_next_session(server: TestServer) -> None:
    assert stamp_of(server, ALICE) == "system"  # alice's scope resolved and kept
    assert stamp_of(server, ALICE) == "system"
    server.cli("plugin", "set", "stamp", "word=domain", "--domain", DOMAIN)
    until(lambda: stamp_of(server, ALICE) == "domain", "the domain's word for alice")
    assert stamp_of(server, BOB) == "domain"


def test_a_user_setting_changes_that_user_only(server: TestServer) -> None:
    assert send(server, BOB)[0] == 250
    server.cli("plugin", "set", "stamp", "refuse=true", "--user", BOB)
    until(lambda: send(server, BOB)[0] == 550, "bob refused")
    code, text = send(server, BOB)
    assert (code, text) == (550, f"5.7.1 {BOB} refused by stamp")
    assert stamp_of(server, ALICE) == "domain"  # alice's kept answer is untouched


def test_switching_a_plugin_off_for_a_user_shows_without_a_reload(server: TestServer) -> None:
    server.cli("plugin", "disable", "stamp", "--user", BOB)
    until(lambda: send(server, BOB)[0] == 250, "stamp off for bob")
    assert stamp_of(server, BOB) is None  # neither hook of the plugin runs for bob now
    assert stamp_of(server, ALICE) == "domain"
