"""The rbl plugin over real SMTP against the real server and a real DNS server: block lists,
reverse DNS and the sender domain."""

from __future__ import annotations

import ipaddress
import json
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmax.plugins.rbl.lists import query_name
from mailmax.testing import TestServer, start_server
from tests.fixtures.dns import Zones, dns_server
from tests.fixtures.ports import free_port

DOMAIN = "example.test"
OTHER = "other.test"
REASON = "Listed for spam, see https://bl.test/lookup"
ZONES: Zones = {
    "bl.test": {
        "5.0.0.127.bl.test": [("A", "127.0.0.2"), ("TXT", REASON)],
        "6.0.0.127.bl.test": [("A", "127.0.0.99")],  # outside the accepted codes
        "7.0.0.127.bl.test": [("A", "127.255.255.254")],  # "query refused"
        query_name("::1", "bl.test"): [("A", "127.0.0.3"), ("TXT", "IPv6 spam source")],
    },
    "ip6.arpa": {ipaddress.ip_address("::1").reverse_pointer: [("PTR", "v6.clients.test")]},
    "two.test": {"8.0.0.127.two.test": [("A", "127.0.0.4")]},
    "127.in-addr.arpa": {
        **{
            f"{n}.0.0.127.in-addr.arpa": [("PTR", f"host{n}.clients.test")]
            for n in (1, 5, 6, 7, 8, 11)
        },
        "9.0.0.127.in-addr.arpa": [("PTR", "liar.clients.test")],
    },
    "clients.test": {
        **{f"host{n}.clients.test": [("A", f"127.0.0.{n}")] for n in (1, 5, 6, 7, 8, 11)},
        "liar.clients.test": [("A", "127.0.0.200")],
        "v6.clients.test": [("AAAA", "::1")],
    },
    "senders.test": {
        "good.senders.test": [("MX", 10, "mx.senders.test")],
        "mx.senders.test": [("A", "192.0.2.25")],
        "aonly.senders.test": [("A", "192.0.2.26")],
        "nullmx.senders.test": [("MX", 0, "")],
        "nomail.senders.test": [("TXT", "v=spf1 -all")],
    },
}


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[str, int]]:
    with dns_server(ZONES) as address:
        yield address


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns: tuple[str, int]) -> Iterator[TestServer]:
    started = start_server(
        tmp_path_factory.mktemp("rbl"),
        plugins=["aliases", "rbl"],
        settings={
            "rbl": {
                "zones": ["bl.test=127.0.0.2-127.0.0.11", "two.test"],
                "reverse_dns": True,
                "sender_domain": True,
                "listeners": {"127.0.0.2": {"enabled": False}},
            }
        },
        sections={
            "queue": {"dns_servers": [f"{dns[0]}:{dns[1]}"], "dns_timeout": 3.0},
            "smtp": {"allow_plaintext_auth": True},
            "listeners": [
                {"service": "smtp", "address": address, "port": 0, "default_domain": DOMAIN}
                for address in ("127.0.0.1", "127.0.0.2", "::1")
            ],
        },
    )
    directory = started.directory()
    try:
        directory.add_domain(OTHER, str(started.data_dir / "mail" / OTHER))
        directory.add_user(f"carol@{OTHER}", "carolsecret")
    finally:
        directory.close()
    started.cli("plugin", "disable", "rbl", "--domain", OTHER)
    yield started
    started.stop()


def port_of(server: TestServer, listener: str) -> int:
    """The port of the SMTP listener at ``listener`` (ports.json lists them in order)."""
    items = json.loads((server.data_dir / "run" / "ports.json").read_text())
    return next(i["port"] for i in items if i.get("address", "127.0.0.1") == listener)


def client(server: TestServer, source: str, listener: str = "127.0.0.1") -> smtplib.SMTP:
    """An SMTP client connected from the loopback address ``source``."""
    port = port_of(server, listener)
    smtp = smtplib.SMTP(listener, port, source_address=(source, 0), timeout=20)
    smtp.ehlo("client.test")
    return smtp


def rcpt_from(
    server: TestServer,
    source: str,
    rcpt: str = "alice@example.test",
    sender: str = "",
    listener: str = "127.0.0.1",
) -> tuple[int, str]:
    sender = sender or "someone@good.senders.test"
    with client(server, source, listener) as smtp:
        assert smtp.mail(sender)[0] == 250
        code, text = smtp.rcpt(rcpt)
        return code, text.decode()


def test_listed_client_is_refused_naming_the_list_and_its_reason(server: TestServer) -> None:
    """554 5.7.1 at RCPT, with the zone and its TXT reason."""
    code, text = rcpt_from(server, "127.0.0.5")
    assert code == 554
    assert text.startswith("5.7.1 ")
    assert "listed at bl.test" in text and REASON in text


def test_second_list_in_order_refuses_too(server: TestServer) -> None:
    code, text = rcpt_from(server, "127.0.0.8")
    assert (code, "listed at two.test" in text) == (554, True)


def test_ipv6_client_is_looked_up_by_its_reversed_nibbles(server: TestServer) -> None:
    code, text = rcpt_from(server, "::1", listener="::1")
    assert code == 554 and "Client host [::1] listed at bl.test: IPv6 spam source" in text


def test_off_for_one_listener_and_for_one_domain(server: TestServer) -> None:
    """Switched off for the listener 127.0.0.2 and for the domain other.test only."""
    assert rcpt_from(server, "127.0.0.5", listener="127.0.0.2")[0] == 250
    assert rcpt_from(server, "127.0.0.5", f"carol@{OTHER}")[0] == 250
    assert rcpt_from(server, "127.0.0.5")[0] == 554


def test_mail_to_postmaster_from_a_listed_client_gets_through(server: TestServer) -> None:
    """RFC 5321 4.5.1: a listed sender can still reach postmaster."""
    assert rcpt_from(server, "127.0.0.5", "postmaster@example.test")[0] == 250


def test_authenticated_session_is_never_refused_by_a_list(server: TestServer) -> None:
    with client(server, "127.0.0.5") as smtp:
        smtp.login("alice@example.test", "alicesecret")
        assert smtp.mail("alice@example.test")[0] == 250
        assert smtp.rcpt("bob@example.test")[0] == 250


def test_unlisted_client_and_answers_outside_the_codes_are_accepted(server: TestServer) -> None:
    """An unlisted client, an answer outside the list's codes, and a 'query refused' answer
    (logged) all pass; the message is delivered."""
    assert rcpt_from(server, "127.0.0.11")[0] == 250
    assert rcpt_from(server, "127.0.0.6")[0] == 250
    assert rcpt_from(server, "127.0.0.7")[0] == 250
    server.wait_for(lambda: "refused the query for 127.0.0.7" in server.log_text())
    with client(server, "127.0.0.6") as smtp:
        smtp.sendmail("ann@good.senders.test", ["bob@example.test"], b"Subject: hi\r\n\r\nhi\r\n")
    assert server.wait_for_mail("bob@example.test")


def test_client_without_reverse_dns_is_refused(server: TestServer) -> None:
    """No PTR name, or a name that does not resolve back to the client."""
    code, text = rcpt_from(server, "127.0.0.10")
    assert (code, text.split()[0]) == (550, "5.7.25")
    assert "no reverse DNS" in text
    code, text = rcpt_from(server, "127.0.0.9")
    assert code == 550 and "liar.clients.test does not resolve back" in text


def test_sender_domain_must_accept_mail(server: TestServer) -> None:
    """MX or address records needed; a null MX refuses; the null sender is exempt."""
    assert rcpt_from(server, "127.0.0.6", sender="x@aonly.senders.test")[0] == 250
    code, text = rcpt_from(server, "127.0.0.6", sender="x@missing.senders.test")
    assert (code, text.split()[0]) == (550, "5.1.8")
    code, text = rcpt_from(server, "127.0.0.6", sender="x@nomail.senders.test")
    assert (code, text.split()[0]) == (550, "5.1.8")
    code, text = rcpt_from(server, "127.0.0.6", sender="x@nullmx.senders.test")
    assert (code, text.split()[0]) == (550, "5.7.27")
    with client(server, "127.0.0.6") as smtp:
        assert smtp.mail("<>")[0] == 250
        assert smtp.rcpt("alice@example.test")[0] == 250


def test_header_action_for_one_user_while_others_refuse(server: TestServer) -> None:
    """Per-user settings: bob takes mail from listed clients with a header; alice does not."""
    server.cli("plugin", "set", "rbl", "dnsbl_action=header", "--user", "bob@example.test")
    server.wait_for(lambda: rcpt_from(server, "127.0.0.5", "bob@example.test")[0] == 250)
    assert rcpt_from(server, "127.0.0.5")[0] == 554
    with client(server, "127.0.0.5") as smtp:
        smtp.sendmail("ann@good.senders.test", ["bob@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    messages = server.wait_for(
        lambda: [m for m in server.messages("bob@example.test") if b"Subject: x" in m]
    )
    assert b"X-MailMax-RBL: Client host [127.0.0.5] listed at bl.test" in messages[0]
    server.cli("plugin", "unset", "rbl", "dnsbl_action", "--user", "bob@example.test")


def silent_dns() -> tuple[socket.socket, int]:
    """A UDP port that takes DNS queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = free_port()
    sock.bind(("127.0.0.1", port))
    return sock, port


def test_dns_timeout_is_a_temporary_failure_or_passes_never_a_refusal(tmp_path: Path) -> None:
    sock, port = silent_dns()
    try:
        started = start_server(
            tmp_path / "timeout",
            plugins=["aliases", "rbl"],
            settings={"rbl": {"zones": ["bl.test"], "reverse_dns": True, "timeout": 1.5}},
            sections={"queue": {"dns_servers": [f"127.0.0.1:{port}"], "dns_timeout": 1.0}},
        )
        try:
            code, text = rcpt_from(started, "127.0.0.5", sender="x@example.test")
            assert (code, text.split()[0]) == (451, "4.4.3")
            started.sections["plugins.settings.rbl"]["timeout_action"] = "pass"
            started.write_config()
            assert started.reload().returncode == 0
            assert rcpt_from(started, "127.0.0.5", sender="x@example.test")[0] == 250
        finally:
            started.stop()
    finally:
        sock.close()


def test_reload_with_new_settings_under_load_drops_nothing(server: TestServer) -> None:
    """Clients keep sending while the lists change and the server reloads: every message is
    accepted once and stored, and a listed client is refused by the new list."""
    sent: list[str] = []
    errors: list[BaseException] = []

    def sender(worker: int) -> None:
        try:
            for n in range(8):
                subject = f"load-{worker}-{n}"
                with client(server, "127.0.0.6") as smtp:
                    smtp.sendmail(
                        "ann@good.senders.test",
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
    table = server.sections["plugins.settings.rbl"]
    table["zones"] = ["two.test", "bl.test=127.0.0.3"]
    server.write_config()
    try:
        assert server.reload().returncode == 0
        for worker in workers:
            worker.join(60)
        assert errors == [] and len(sent) == 32

        def stored() -> bool:
            found = [m for m in server.messages("alice@example.test") if b"Subject: load-" in m]
            return len(found) == 32

        server.wait_for(stored, timeout=30, what="32 messages stored")
        assert rcpt_from(server, "127.0.0.5")[0] == 250  # 127.0.0.2 is no longer a listing
        assert rcpt_from(server, "127.0.0.8")[0] == 554
    finally:
        table["zones"] = ["bl.test=127.0.0.2-127.0.0.11", "two.test"]
        server.write_config()
        assert server.reload().returncode == 0
