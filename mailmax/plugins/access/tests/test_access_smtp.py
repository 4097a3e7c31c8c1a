"""The access plugin over real SMTP and POP3 against one running server, managed with
`mailmax access`.

Clients connect from different loopback addresses (127.0.1.5, ...) to be told apart; every test
uses addresses of its own, so the rules of one never touch another. A real DNS server lists two
of them in a block list, for the "no open-relay check" flag.
"""

from __future__ import annotations

import json
import smtplib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mailmax.core.directory.engine import transaction
from mailmax.plugins.access import store
from mailmax.plugins.access.rules import check_flags, parse_pattern
from mailmax.testing import DOMAIN, TestServer, start_server
from tests.fixtures.dns import Zones, dns_server

ALICE = f"alice@{DOMAIN}"
REMOTE = "someone@remote.example"
ZONES: Zones = {
    "bl.test": {f"{n}.5.0.127.bl.test": [("A", "127.0.0.2")] for n in (1, 2)},
}
BODY = b"From: someone\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """Access switched on for the listening address 127.0.0.1 only (not 127.0.0.2)."""
    with dns_server(ZONES) as dns:
        started = start_server(
            tmp_path_factory.mktemp("access"),
            plugins=["bans", "aliases", "rbl"],
            settings={
                "access": {
                    "refresh_seconds": 0.5,
                    "listeners": {"127.0.0.1": {"enabled": True}},
                },
                "bans": {"refresh_seconds": 0.5},
                "rbl": {"zones": ["bl.test"]},
            },
            sections={
                "listeners": [
                    {"service": service, "address": address, "port": 0, "default_domain": DOMAIN}
                    for service, address in (
                        ("smtp", "127.0.0.1"),
                        ("smtp", "127.0.0.2"),
                        ("submission", "127.0.0.1"),
                        ("pop3", "127.0.0.1"),
                        ("imap", "127.0.0.1"),
                    )
                ],
                "queue": {"dns_servers": [f"{dns[0]}:{dns[1]}"], "dns_timeout": 3.0},
                "smtp": {"allow_plaintext_auth": True, "trusted_networks": ["127.0.6.0/24"]},
                "connections": {"max_sessions_per_ip": 2, "exempt_networks": []},
            },
        )
        yield started
        started.stop()


@pytest.fixture(scope="module")
def engine(server: TestServer) -> Iterator[Any]:
    """The server's directory database, where the rules are kept."""
    directory = server.directory()
    yield directory.engine
    directory.close()


def rule(engine: Any, pattern: str, kind: str, *flags: str, listener: str = "") -> None:
    """Store a rule as `mailmax access add` does (last in its list)."""
    text = parse_pattern(pattern).text
    with transaction(engine, write=True) as connection:
        store.add(connection, listener, text, kind, check_flags(kind, flags), "")


def ports(server: TestServer) -> dict[str, int]:
    """The port of each listener, by ``service@address``."""
    items = json.loads((server.data_dir / "run" / "ports.json").read_text())
    return {f"{i['service']}@{i.get('address', '127.0.0.1')}": i["port"] for i in items}


def smtp(
    server: TestServer, source: str, service: str = "smtp", address: str = "127.0.0.1"
) -> smtplib.SMTP:
    """An SMTP client from ``source`` on the listener of ``service`` at ``address``."""
    port = ports(server)[f"{service}@{address}"]
    return smtplib.SMTP(address, port, timeout=10, source_address=(source, 0))


def greeting(server: TestServer, source: str, address: str = "127.0.0.1") -> int:
    """The greeting code a client from ``source`` gets."""
    try:
        with smtp(server, source, address=address):
            return 220
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code


def greets(server: TestServer, source: str, code: int, address: str = "127.0.0.1") -> None:
    """Wait until a client from ``source`` is greeted with ``code`` (rules hold within 0.5 s)."""
    server.wait_for(
        lambda: greeting(server, source, address) == code, what=f"{source}: {code} greeting"
    )


def relay_reply(server: TestServer, source: str, service: str = "smtp") -> int:
    """The code of RCPT TO a remote address (after MAIL FROM was accepted), or MAIL's."""
    with smtp(server, source, service) as client:
        client.ehlo("client.test")
        code = client.mail("sender@example.org")[0]
        return client.rcpt(REMOTE)[0] if code == 250 else code


def access(server: TestServer, *args: str) -> Any:
    """`mailmax access ARGS --json`, its JSON."""
    return json.loads(server.cli("access", *args, "--json").stdout)


def raw(server: TestServer, source: str, service: str = "smtp") -> tuple[socket.socket, Any]:
    """A plain socket from ``source`` and its line reader."""
    sock = socket.create_connection(
        ("127.0.0.1", ports(server)[f"{service}@127.0.0.1"]), 10, (source, 0)
    )
    return sock, sock.makefile("rb")


def test_first_matching_rule_decides_and_moving_a_rule_changes_that(server, engine) -> None:
    """An address, a range and a `*` pattern overlap: the earliest in the list wins."""
    added = access(server, "add", "127.0.1.5", "permitted", "--comment", "our partner")
    assert added["object"]["position"] == 1 and added["object"]["comment"] == "our partner"
    rule(engine, "127.0.1.1-9", "banned")
    rule(engine, "127.0.1.*", "custom", "allow-relaying")
    greets(server, "127.0.1.6", 554)
    assert greeting(server, "127.0.1.5") == 220
    assert relay_reply(server, "127.0.1.5") == 554  # permitted: normal access, no relaying
    assert relay_reply(server, "127.0.1.20") == 250  # the third rule
    moved = access(server, "move", "127.0.1.5", "3")["object"]
    assert (moved["position"], moved["pattern"]) == (3, "127.0.1.5")
    greets(server, "127.0.1.5", 554)
    listed = [(r["position"], r["pattern"], r["kind"]) for r in access(server, "list", "--system")]
    assert listed[:3] == [(1, "127.0.1.1-9", "banned"), (2, "127.0.1.*", "custom"),
                          (3, "127.0.1.5", "permitted")]  # fmt: skip


def test_banned_smtp_client_gets_554_then_503_and_pop3_imap_close(server, engine) -> None:
    """RFC 5321 3.1: the server waits for QUIT; every other command is refused with 503."""
    rule(engine, "127.0.2.5", "banned")
    greets(server, "127.0.2.5", 554)
    sock, lines = raw(server, "127.0.2.5")
    with sock:
        assert lines.readline() == b"554 5.7.1 Connections from 127.0.2.5 are refused here\r\n"
        for command in (b"EHLO client.test", b"MAIL FROM:<a@example.org>", b"NOOP"):
            sock.sendall(command + b"\r\n")
            assert lines.readline().startswith(b"503 5.7.1 ")
        sock.sendall(b"QUIT\r\n")
        assert lines.readline().startswith(b"221 ")
        assert lines.readline() == b""
    refusal = b"-ERR [SYS/PERM] Connections from 127.0.2.5 are refused here\r\n"
    server.wait_for(lambda: pop3_greeting(server, "127.0.2.5") == refusal, what="POP3 refused")
    sock, lines = raw(server, "127.0.2.5", "imap")
    with sock:
        assert lines.readline() == b"* BYE Connections from 127.0.2.5 are refused here\r\n"
        assert lines.readline() == b""
    assert "127.0.2.5" in server.log_text() and "banned" in server.log_text()
    with transaction(engine, write=True) as connection:
        store.delete(connection, "", "127.0.2.5")
    greets(server, "127.0.2.5", 220)


def pop3_greeting(server: TestServer, source: str) -> bytes:
    """The first line a POP3 client from ``source`` gets (empty when then closed)."""
    sock, lines = raw(server, source, "pop3")
    with sock:
        first = lines.readline()
        return first if first.startswith(b"+OK") or lines.readline() == b"" else b"open"


def test_each_kind_and_flag_grants_what_it_says(server, engine) -> None:
    """Trusted; allow-relaying; no-auth-required; local-mail-only; no open-relay check."""
    for pattern, kind, *flags in (
        ("127.0.3.2", "custom", "allow-relaying"),
        ("127.0.3.3", "custom", "no-auth-required"),
        ("127.0.3.4", "custom", "local-mail-only"),
        ("127.0.5.1", "custom", "no-open-relay-check"),
        ("127.0.3.1", "trusted"),
    ):
        rule(engine, pattern, kind, *flags)
    server.wait_for(  # the last rule holds: so do the others
        lambda: relay_reply(server, "127.0.3.1", "submission") == 250, what="the rules to hold"
    )
    assert relay_reply(server, "127.0.3.2") == 250  # relays on port 25 ...
    assert relay_reply(server, "127.0.3.2", "submission") == 530  # ... but is no AUTH exemption
    assert relay_reply(server, "127.0.3.3", "submission") == 250  # sends as if authenticated
    assert relay_reply(server, "127.0.3.9", "submission") == 530  # no rule
    with smtp(server, "127.0.3.4") as client:  # local mail only, even after AUTH
        client.ehlo("client.test")
        client.esmtp_features["auth"] = "PLAIN"
        assert client.login(ALICE, "alicesecret")[0] == 235
        client.mail(ALICE)
        assert client.rcpt(REMOTE)[0] == 554
        assert client.rcpt(f"bob@{DOMAIN}")[0] == 250
    with smtp(server, "127.0.5.1") as client:  # listed, but not checked
        client.ehlo("client.test")
        client.mail("sender@example.org")
        assert client.rcpt(ALICE)[0] == 250
    with smtp(server, "127.0.5.2") as client:  # listed and checked
        client.ehlo("client.test")
        client.mail("sender@example.org")
        code, text = client.rcpt(ALICE)
        assert (code, b"bl.test" in text) == (554, True)


def test_connection_limit_exemption_is_a_rule(server, engine) -> None:
    """max_sessions_per_ip is 2: a client of an exempt rule opens more, another does not."""
    rule(engine, "127.0.3.5", "custom", "exempt-from-connection-limits")
    server.wait_for(lambda: greetings(server, "127.0.3.5", 3) == [b"220"] * 3, what="exempt")
    assert greetings(server, "127.0.3.6", 3) == [b"220", b"220", b"421"]


def greetings(server: TestServer, source: str, count: int) -> list[bytes]:
    """The greeting codes of ``count`` connections from ``source`` held open together."""
    held = []
    try:
        for _ in range(count):
            held.append(raw(server, source))
        return [lines.readline()[:3] for _, lines in held]
    finally:
        for sock, _ in held:
            sock.close()


def test_per_listener_list_goes_first_and_the_plugin_can_be_off_on_a_listener(
    server, engine
) -> None:
    """A listener's rules hold on that listener only, before the system-wide ones; the
    plugin is on for 127.0.0.1 only, so no rule holds on 127.0.0.2."""
    rule(engine, "127.0.4.5", "banned", listener="127.0.0.1")
    rule(engine, "127.0.4.6", "banned")
    rule(engine, "127.0.4.7", "permitted", listener="127.0.0.1")
    rule(engine, "127.0.4.7", "banned")
    greets(server, "127.0.4.5", 554)
    greets(server, "127.0.4.6", 554)
    assert greeting(server, "127.0.4.7") == 220
    for source in ("127.0.4.5", "127.0.4.6", "127.0.4.7"):
        assert greeting(server, source, address="127.0.0.2") == 220


def test_configured_trusted_networks_are_rules_after_the_stored_ones(server, engine) -> None:
    """[smtp] trusted_networks is listed as a rule from the config; stored rules go first;
    `list` shows the listeners' lists, then the system-wide one, then the config's."""
    assert relay_reply(server, "127.0.6.1") == 250
    rule(engine, "127.0.6.2", "banned")
    rule(engine, "127.0.6.3", "permitted", listener="127.0.0.1")
    greets(server, "127.0.6.2", 554)
    rows = access(server, "list")
    assert rows[0]["where"].startswith("listener 127.0.0.1")
    assert [r["where"] for r in rows[-2:]] == ["system", "config"]
    implied = [r for r in rows if r["where"] == "config"]
    assert [(r["pattern"], r["kind"]) for r in implied] == [("127.0.6.0/24", "trusted")]
    assert implied[0]["source"].startswith("[smtp] trusted_networks in ")
    refused = server.cli("access", "delete", "127.0.6.0/24", check=False)
    assert refused.returncode == 1
    assert "comes from [smtp] trusted_networks" in refused.stderr


def test_bad_input_is_refused_and_changes_nothing(server, engine) -> None:
    """Unknown forms, flags where none belong, unknown listeners: exit 1 and why."""
    with transaction(engine) as connection:
        before = store.all_rules(connection)
    for args, why in (
        (("add", "127.0.300.1", "banned"), "not a number from 0 to 255"),
        (("add", "127.0.9.1", "custom", "--flag", "fly"), "unknown flag"),
        (("add", "127.0.9.1", "banned", "--listener", "192.0.2.1"), "no listener on"),
    ):
        result = server.cli("access", *args, check=False)
        assert result.returncode == 1 and why in result.stderr, (args, result.stderr)
    with transaction(engine) as connection:
        assert store.all_rules(connection) == before
        assert store.move(connection, "", "127.0.9.9", 1) is None


def test_a_reload_that_changes_settings_under_load_loses_nothing(server) -> None:
    """Sessions open across a reload that changes the access and bans settings finish, and
    every message sent during it is delivered once."""
    sent: list[int] = []
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set() and len(sent) < 40:
            with smtp(server, f"127.0.7.{10 + len(sent)}") as client:
                client.sendmail("sender@example.org", [ALICE], BODY)
                sent.append(1)

    before = len(server.messages(ALICE))
    open_sessions = []
    for n in range(3):
        client = smtp(server, f"127.0.7.{n + 1}")
        client.ehlo("client.test")
        client.mail("sender@example.org")
        client.rcpt(ALICE)
        open_sessions.append(client)
    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        server.sections["plugins.settings.access"]["refresh_seconds"] = 1.0
        server.sections["plugins.settings.bans"]["refresh_seconds"] = 1.0
        server.write_config()
        assert server.reload().returncode == 0
        for client in open_sessions:
            assert client.data(BODY)[0] == 250
            client.quit()
    finally:
        stop.set()
        sender.join(30)
    assert sent
    server.wait_for_mail(ALICE, before + len(sent) + 3)
    assert len(server.messages(ALICE)) == before + len(sent) + 3
