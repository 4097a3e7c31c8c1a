"""The routing plugin (Q7, Q8, Q10, Q11, Q12, Q13): smart hosts, relay-to-host, backup MX,
delivery engines and rules, with real DNS and receiving SMTP servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mailmax.plugins.routing as routing
from mailmax.core.directory.api import DomainType
from mailmax.core.hooks import LoadedPlugin, PluginSet, Scope
from mailmax.core.pluginhost import settings as schemas
from mailmax.core.verdicts import reject
from mailmax.testing import PluginHarness, TestServer
from tests.fixtures.smtp_sink import smtp_sink
from tests.test_outbound_support import Outbound
from tests.test_queue_support import QueueHarness, parse_dsn, plugin

NAME = "mailmax.plugins.routing"


def loaded(settings: dict[str, Any]) -> LoadedPlugin:
    """The routing plugin with validated system settings."""
    checked = schemas.validate("routing", routing.Settings, settings)
    return LoadedPlugin("routing", routing, checked, schema=routing.Settings)


def with_routing(queue: QueueHarness, settings: dict[str, Any], *others: LoadedPlugin) -> None:
    queue.plugin_set = PluginSet([loaded(settings), *others])


def test_relay_to_host_domain_goes_to_its_delivery_host(outbound: Outbound, tmp_path: Path) -> None:
    """Q8/Q13: all mail for a relay-to-host domain goes to its delivery address with no MX
    look-up (the domain is not even in DNS); the transit hook sees it first, and not the
    mail to other domains."""
    seen: list[str] = []

    def scanner(domain: str) -> None:
        seen.append(domain)

    with smtp_sink(tmp_path / "inside") as inside, smtp_sink(tmp_path / "mx", port=outbound.port):
        queue = outbound.queue()
        queue.directory.add_domain(
            "relay.test", type=DomainType.RELAY, delivery_host=f"127.0.0.1:{inside.port}"
        )
        with_routing(queue, {}, plugin("scanner", mailmax_transit=scanner))
        queue.submit(["one@relay.test", "two@relay.test", "x@example.org"])
        (tx,) = inside.wait_for(1)
        assert tx["rcpts"] == ["one@relay.test", "two@relay.test"]
        queue.wait_queue_empty()
        assert seen == ["relay.test"]


def test_transit_hook_can_refuse_relay_mail(outbound: Outbound, tmp_path: Path) -> None:
    """Q13: a transit plugin (a virus scanner) that rejects relay mail bounces it unsent."""
    with smtp_sink(tmp_path / "inside") as inside:
        queue = outbound.queue()
        queue.directory.add_domain(
            "relay.test", type=DomainType.RELAY, delivery_host=f"127.0.0.1:{inside.port}"
        )
        infected = plugin(
            "scanner", mailmax_transit=lambda: reject("Virus found: Test.EICAR", 554, "5.7.0")
        )
        with_routing(queue, {}, infected)
        queue.submit(["one@relay.test"])
        (dsn,) = queue.wait_mail("alice@example.com")
        (one,) = parse_dsn(dsn)[1]
        assert one["Status"] == "5.7.0" and "Virus found" in one["Diagnostic-Code"]
        assert inside.transactions() == []


def test_backup_mx_domain_waits_for_the_primary(outbound: Outbound, tmp_path: Path) -> None:
    """Q10: mail for a backup domain goes only to MX hosts preferred over this server's
    priority; while the primary is down it is retried without warning or bounce, and it
    reaches the primary once it is up."""
    with smtp_sink(tmp_path / "tertiary", port=outbound.port) as tertiary:
        queue = outbound.queue(retry_minutes=0.005, max_retries=0, soft_max_resends=0)
        queue.directory.add_domain("backup.test", type=DomainType.BACKUP, backup_priority=20)
        with_routing(queue, {})
        queue_id = queue.submit(["user@backup.test"])
        queue.wait_for(lambda: queue.spool.load(queue_id).recipients[0].attempts >= 3, "retries")
        assert queue.messages("alice@example.com") == []
        with smtp_sink(tmp_path / "primary", port=outbound.port, address="127.0.0.2") as primary:
            assert primary.wait_for(1)[0]["rcpts"] == ["user@backup.test"]
            queue.wait_queue_empty()
        assert tertiary.transactions() == []


def test_smart_host_system_wide(outbound: Outbound, tmp_path: Path) -> None:
    """Q7: with smart hosting on, all outbound mail goes to the smart host, whatever the
    destination; local mail is still stored here."""
    with smtp_sink(tmp_path / "isp") as isp, smtp_sink(tmp_path / "mx", port=outbound.port) as mx:
        queue = outbound.queue()
        smart = {"smart_host_enabled": True, "smart_host": f"127.0.0.1:{isp.port}"}
        with_routing(queue, {**smart, "smart_host_tls": "none"})
        queue.submit(["a@example.org", "b@pref.test", "bob@example.com"])
        (tx,) = isp.wait_for(1)
        assert sorted(tx["rcpts"]) == ["a@example.org", "b@pref.test"]
        queue.wait_mail("bob@example.com")
        queue.wait_queue_empty()
        assert mx.transactions() == []


def test_smart_host_per_sending_domain(outbound: Outbound, tmp_path: Path) -> None:
    """Q7: a domain can switch smart hosting on for its own users (or off when the system
    has it on); mail from others follows the system setting."""
    with smtp_sink(tmp_path / "isp") as isp, smtp_sink(tmp_path / "mx", port=outbound.port) as mx:
        queue = outbound.queue()
        domain_on = {"smart_host_enabled": True, "smart_host": f"127.0.0.1:{isp.port}"}
        harness = PluginHarness(
            routing, {"smart_host_tls": "none"}, overrides={Scope(domain="example.com"): domain_on}
        )
        queue.plugin_set = harness.plugin_set
        queue.submit(["a@example.org"])  # from alice@example.com: the domain's smart host
        queue.submit(["b@example.org"], sender="someone@elsewhere.test")  # system: direct
        assert isp.wait_for(1)[0]["rcpts"] == ["a@example.org"]
        assert mx.wait_for(1)[0]["rcpts"] == ["b@example.org"]
        queue.wait_queue_empty()
        system_on = {**domain_on, "smart_host_tls": "none"}
        harness = PluginHarness(
            routing,
            system_on,
            overrides={Scope(domain="example.com"): {"smart_host_enabled": False}},
        )
        queue.plugin_set = harness.plugin_set
        queue.submit(["c@example.org"])
        assert [tx["rcpts"] for tx in mx.wait_for(2)] == [["b@example.org"], ["c@example.org"]]
        queue.wait_queue_empty()


def test_delivery_engines_and_rules(outbound: Outbound, tmp_path: Path) -> None:
    """Q11/Q12: engines are tried in their order; a rule on the destination domain, the
    sender or the size puts its engine first; a failed engine passes the mail to the next;
    the internal engine can be left out."""
    with (
        smtp_sink(tmp_path / "mx", port=outbound.port) as mx,
        smtp_sink(tmp_path / "a") as sink_a,
        smtp_sink(tmp_path / "b") as sink_b,
    ):
        hosts = [
            {"name": "isp-a", "host": "127.0.0.1", "port": sink_a.port, "tls": "none"},
            {"name": "isp-b", "host": "127.0.0.1", "port": sink_b.port, "tls": "none"},
        ]
        rules = [
            {"engine": "isp-a", "domain": "*.pref.test"},
            {"engine": "isp-a", "domain": "pref.test"},
            {"engine": "isp-b", "sender": "carol@example.com"},
            {"engine": "isp-b", "larger_than_kb": 20},
        ]
        queue = outbound.queue()
        settings = {"engines": ["direct", "isp-a", "isp-b"], "smart_hosts": hosts, "rules": rules}
        with_routing(queue, settings)
        queue.submit(["plain@example.org"])
        queue.submit(["ruled@pref.test"])
        queue.submit(["from-carol@example.org"], sender="carol@example.com")
        queue.submit(["big@example.org"], body=b"x" * 30_000 + b"\r\n")
        assert [tx["rcpts"] for tx in mx.wait_for(1)] == [["plain@example.org"]]
        assert [tx["rcpts"] for tx in sink_a.wait_for(1)] == [["ruled@pref.test"]]
        assert sorted(tx["rcpts"][0] for tx in sink_b.wait_for(2)) == [
            "big@example.org",
            "from-carol@example.org",
        ]
        queue.wait_queue_empty()
        # isp-a down: the next engine in order (isp-b) takes over; direct left out
        dead = {"name": "isp-a", "host": "127.0.0.2", "port": sink_a.port, "tls": "none"}
        with_routing(queue, {"engines": ["isp-a", "isp-b"], "smart_hosts": [dead, hosts[1]]})
        queue.submit(["fallback@example.org"])
        assert sink_b.wait_for(3)[-1]["rcpts"] == ["fallback@example.org"]
        queue.wait_queue_empty()
        assert len(mx.transactions()) == 1


def test_tls_required_per_destination(outbound: Outbound, tmp_path: Path) -> None:
    """S4/Q7: a destination can require TLS: its mail never goes out in clear text (it waits),
    while other destinations keep opportunistic TLS."""
    with smtp_sink(tmp_path / "mx", port=outbound.port) as mx:
        queue = outbound.queue()
        with_routing(queue, {"tls_policies": {"example.org": "encrypt"}})
        queue_id = queue.submit(["secret@example.org"])
        queue.submit(["open@implicit.test"])
        assert mx.wait_for(1)[0]["rcpts"] == ["open@implicit.test"]
        envelope = queue.wait_for(
            lambda: (e := queue.spool.load(queue_id)).recipients[0].attempts >= 1 and e,
            "a deferred attempt",
        )
        assert "does not offer STARTTLS" in envelope.recipients[0].last_error
        assert len(mx.transactions()) == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"engines": ["nowhere"]}, "neither 'direct' nor a smart host"),
        ({"rules": [{"engine": "direct"}]}, "a rule needs a domain"),
        ({"smart_host_enabled": True}, "needs smart_host"),
        ({"smart_hosts": [{"name": "direct", "host": "x"}]}, "internal engine"),
        ({"smart_host": "mail.isp.example:notaport"}, "host or host:port"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(settings: dict[str, Any], message: str) -> None:
    """Q11/Q12 (M4): inconsistent routing settings are refused, saying what is wrong."""
    with pytest.raises(schemas.SettingsError, match=message):
        PluginHarness(routing, settings)


def test_smart_host_with_starttls_and_auth_end_to_end(
    mailmax_server: Callable[..., TestServer], tmp_path: Path
) -> None:
    """Q7: in a real server, a system-wide smart host gets the mail over STARTTLS (its
    certificate verified) after AUTH with the configured credentials."""
    with smtp_sink(
        tmp_path / "isp", starttls=True, auth={"relay": "s3cret"}, require_auth=True
    ) as isp:
        server = mailmax_server(
            plugins=[NAME],
            settings={
                NAME: {
                    "smart_host_enabled": True,
                    "smart_host": f"127.0.0.1:{isp.port}",
                    "smart_host_username": "relay",
                    "smart_host_password": "s3cret",
                    "smart_host_tls": "verify",
                }
            },
            sections={
                "smtp": {"trusted_networks": ["127.0.0.1/32"]},
                "queue": {"tls_ca_file": str(isp.cert_path)},
            },
        )
        with server.smtp() as client:
            client.sendmail(
                "alice@example.test", ["far@away.test"], b"Subject: via isp\r\n\r\nx\r\n"
            )
        (tx,) = isp.wait_for(1)
        assert tx["tls"] and tx["auth"] == "relay" and tx["rcpts"] == ["far@away.test"]
        assert isp.message(tx).endswith(b"Subject: via isp\r\n\r\nx\r\n")


def test_domain_smart_host_set_from_the_cli(
    mailmax_server: Callable[..., TestServer], tmp_path: Path
) -> None:
    """Q7/M1: `mailmax plugin set routing ... --domain D` gives one sending domain its own
    smart host in a running server; the system setting stays off."""
    with smtp_sink(tmp_path / "isp") as isp:
        server = mailmax_server(
            plugins=[NAME], sections={"smtp": {"trusted_networks": ["127.0.0.1/32"]}}
        )
        server.cli("plugin", "set", NAME, "smart_host_enabled=true",
                   f"smart_host=127.0.0.1:{isp.port}", "smart_host_tls=none",
                   "--domain", "example.test")  # fmt: skip
        time.sleep(1.2)  # the directory cache
        with server.smtp() as client:
            client.sendmail("alice@example.test", ["far@away.test"], b"Subject: d\r\n\r\nx\r\n")
        (tx,) = isp.wait_for(1)
        assert tx["mail_from"] == "alice@example.test" and tx["rcpts"] == ["far@away.test"]
