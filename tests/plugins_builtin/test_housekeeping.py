"""Housekeeping (S6): old messages leave the chosen folders, idle users are reported or
disabled; on the plugin's daily schedule (a test clock) and with `mailmax housekeeping run`
while an IMAP client idles in the folder."""

from __future__ import annotations

import imaplib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from twisted.internet import task

from mailmax.core.directory.api import AccountType
from mailmax.core.hooks import Scope
from mailmax.core.pluginhost.settings import SettingsError
from mailmax.core.store.mailbox import MailStore
from mailmax.testing import PluginHarness, TestServer, start_server

DAY = 86400
DOMAIN = "example.com"


def _message(subject: str) -> bytes:
    return f"From: a@b.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def _subjects(store: MailStore, folder: str) -> list[str]:
    with store.open(folder) as opened:
        return sorted(
            opened.read(m.uid).split(b"Subject: ")[1].split(b"\r\n")[0].decode()
            for m in opened.messages()
        )


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[PluginHarness]:
    clock = task.Clock()
    clock.advance(time.time())
    overrides = {
        Scope(domain=DOMAIN): {
            "remove_after_days": 30,
            "inactive_days": 90,
            "inactive_action": "disable",
        }
    }
    url = f"sqlite:///{tmp_path / 'mailmax.db'}"
    harness = PluginHarness(
        "housekeeping",
        overrides=overrides,
        data_dir=tmp_path,
        database_url=url,
        clock=clock,
    )
    harness.directory.add_domain(DOMAIN, str(tmp_path / "mail" / DOMAIN))
    harness.directory.add_domain("other.com", str(tmp_path / "mail" / "other.com"))
    for address in ("ann@example.com", "ben@example.com", "cat@other.com"):
        harness.directory.add_user(address, "secret")
    yield harness
    harness.close()


def test_daily_run_removes_old_messages_and_disables_idle_users(harness: PluginHarness) -> None:
    """S6: at its daily time the task removes what is older than the domain's days from Trash
    and Junk only (other folders and other domains keep theirs), and disables a user with no
    login for 90 days, counting a never-seen user from the first run."""
    now = harness.clock.seconds()
    directory = harness.directory
    stores = {}
    for address in ("ann@example.com", "cat@other.com"):
        store = stores[address] = MailStore(directory.user_maildir(directory.get_user(address)))
        for folder in ("Trash", "Junk", "Archive"):
            store.create_folder(folder)
            with store.open(folder) as opened:
                opened.append(_message(f"{folder} old"), internaldate=now - 40 * DAY)
                opened.append(_message(f"{folder} recent"), internaldate=now - 10 * DAY)
    directory.record_login("ann@example.com", "imap", "127.0.0.1")

    assert harness.next_run("housekeeping") <= now + DAY
    # Clock.advance runs each timer due once: one daily run per jump (the key-value purge,
    # due every minute, runs once too instead of a thousand times a day)
    harness.clock.advance(DAY)
    ann = stores["ann@example.com"]
    assert _subjects(ann, "Trash") == ["Trash recent"]
    assert _subjects(ann, "Junk") == ["Junk recent"]
    assert _subjects(ann, "Archive") == ["Archive old", "Archive recent"]
    assert len(_subjects(stores["cat@other.com"], "Trash")) == 2  # housekeeping off there

    harness.clock.advance(21 * DAY)  # the "recent" ones are now 31 days old
    assert _subjects(ann, "Trash") == [] and _subjects(ann, "Junk") == []
    assert directory.get_user("ben@example.com").account_type is AccountType.NORMAL
    harness.clock.advance(69 * DAY)  # ann's login was 91 days ago; ben first seen 90 days ago
    assert directory.get_user("ann@example.com").account_type is AccountType.DISABLED
    assert directory.get_user("ben@example.com").account_type is AccountType.DISABLED
    assert directory.get_user("cat@other.com").account_type is AccountType.NORMAL
    assert "housekeeping.task.housekeeping.failures" not in str(harness.metrics())


@pytest.fixture
def paris_server_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's time zone (the process's local time) is Europe/Paris for the test."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_run_at_is_a_time_of_day_in_the_server_time_zone(
    tmp_path: Path, paris_server_time: None
) -> None:
    """S6: the daily run happens at `run_at` in the server's time zone, every day; a time
    that is not HH:MM is refused with what to write."""
    clock = task.Clock()
    clock.advance(datetime(2027, 1, 10, 12, 0, tzinfo=UTC).timestamp())
    harness = PluginHarness(
        "housekeeping",
        {"run_at": "22:15", "remove_after_days": 30},
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'mailmax.db'}",
        clock=clock,
    )
    try:
        paris_evening = datetime(2027, 1, 10, 21, 15, tzinfo=UTC).timestamp()  # 22:15 in Paris
        assert harness.next_run("housekeeping") == paris_evening
        harness.advance(paris_evening - clock.seconds())
        assert harness.next_run("housekeeping") == paris_evening + DAY
        assert harness.metrics()["counters"]["housekeeping.task.housekeeping.runs"] == 1
    finally:
        harness.close()
    for wrong in ("25:00", "3:30", "noon"):
        with pytest.raises(SettingsError) as refused:
            PluginHarness("housekeeping", {"run_at": wrong})
        assert f"{wrong!r} is not a time of day: write HH:MM on a 24-hour clock" in str(
            refused.value
        )


# ---------------------------------------------------------------------- over IMAP
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    listeners = [
        {"service": "smtp", "address": "127.0.0.1", "port": 0, "default_domain": "example.test"},
        {"service": "imap", "address": "127.0.0.1", "port": 0, "default_domain": "example.test"},
    ]
    server = start_server(
        tmp_path_factory.mktemp("housekeeping"),
        plugins=["housekeeping"],
        settings={"housekeeping": {"remove_after_days": 30}},
        sections={
            "listeners": listeners,
            "imap": {"allow_plaintext_auth": True, "idle_poll_seconds": 0.2},
        },
    )
    yield server
    server.stop(timeout=15)


def test_run_expunges_under_an_idling_imap_client(server: TestServer) -> None:
    """S6: `housekeeping run --dry-run` says what it would remove and removes nothing; the
    real run removes it through the store, and the client idling in Trash is told EXPUNGE."""
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=15)
    client.login("alice", "alicesecret")
    old = time.time() - 40 * DAY
    for folder in ("Trash", "Archive"):
        client.create(folder)
        assert client.append(folder, None, old, _message(f"{folder} old"))[0] == "OK"
        assert client.append(folder, None, time.time(), _message(f"{folder} new"))[0] == "OK"
    assert client.select("Trash") == ("OK", [b"2"])

    dry = json.loads(server.cli("housekeeping", "run", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["domains"] == ["example.test"]
    assert [(r["user"], r["folder"], r["messages"]) for r in dry["removed"]] == [
        ("alice@example.test", "Trash", 1)
    ]
    assert client.noop()[0] == "OK" and client.select("Trash") == ("OK", [b"2"])

    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    assert client.readline() == b"+ idling\r\n"
    done = server.cli("housekeeping", "run")
    assert "alice@example.test Trash: removed 1 message(s)" in done.stdout
    assert client.readline() == b"* 1 EXPUNGE\r\n"
    client.send(b"DONE\r\n")
    assert client.readline() == tag + b" OK IDLE terminated\r\n"
    _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Trash new" in data[0][1] and len([d for d in data if isinstance(d, tuple)]) == 1
    assert client.select("Archive") == ("OK", [b"2"])
    client.logout()
