"""What a reload applies and what waits for a restart (the "on reload" column of the docs)."""

from __future__ import annotations

from mailmax.core import config
from mailmax.core.configdiff import ReloadReport, compare

RUNNING = {
    "server": {"hostname": "mx.example.com"},
    "listeners": [
        {"service": "smtp", "port": 25, "display_name": "MX"},
        {"service": "imap", "port": 143},
    ],
    "smtp": {"max_message_size": 10000},
}


def settings(**changes: dict) -> config.Settings:
    data = {name: (list(v) if isinstance(v, list) else dict(v)) for name, v in RUNNING.items()}
    for name, value in changes.items():
        data[name] = value if isinstance(value, list) else {**data.get(name, {}), **value}
    return config.parse(data, "/srv/mail/mailmax.toml")


def test_nothing_changed() -> None:
    difference = compare(settings(), settings())
    assert (difference.applied, difference.restart) == ([], [])
    assert difference.effective == settings()


def test_live_keys_apply_and_restart_keys_keep_their_running_value() -> None:
    new = settings(
        smtp={"max_message_size": 20000, "trusted_networks": ["192.0.2.0/24"]},
        server={"hostname": "other.example.com", "log_file": "logs/mail.log"},
        spool={"dir": "/var/spool/mailmax"},
        plugins={"enabled": ["aliases"]},
    )
    difference = compare(settings(), new)
    assert difference.applied == [
        "server.log_file",
        "smtp.max_message_size",
        "smtp.trusted_networks",
        "plugins.enabled",
    ]
    assert difference.restart == [
        'server.hostname ("mx.example.com" -> "other.example.com")',
        'spool.dir ("queue" -> "/var/spool/mailmax")',
    ]
    effective = difference.effective
    assert effective.server.hostname == "mx.example.com"
    assert effective.server.log_file == "logs/mail.log"
    assert effective.spool.dir == "queue"
    assert effective.smtp.max_message_size == 20000
    assert "enabled" in effective.plugins.model_fields_set  # the explicit list stays explicit
    assert effective.source == "/srv/mail/mailmax.toml"


def test_listeners_are_matched_by_service_address_and_port() -> None:
    new = settings(
        listeners=[
            {"service": "smtp", "port": 2525, "display_name": "MX"},
            {"service": "imap", "port": 143, "display_name": "Mail", "default_domain": "x.test"},
        ]
    )
    difference = compare(settings(), new)
    assert difference.applied == [
        "listeners[imap on 127.0.0.1:143].default_domain",
        "listeners[imap on 127.0.0.1:143].display_name",
    ]
    assert difference.restart == [
        "listeners: smtp on 127.0.0.1:25 is no longer configured",
        "listeners: smtp on 127.0.0.1:2525 is new",
    ]
    smtp, imap = difference.effective.listeners
    assert (smtp.port, smtp.display_name) == (25, "MX")
    assert (imap.display_name, imap.default_domain) == ("Mail", "x.test")


def test_report_lines() -> None:
    report = ReloadReport(["aliases"], ["smtp.max_hops"], ["listeners: smtp on :25 is new"])
    assert report.lines() == [
        "reloaded: plugins aliases",
        "applied: smtp.max_hops",
        "not applied, needs a restart (running with the old value):",
        "  listeners: smtp on :25 is new",
    ]
    assert ReloadReport([], [], []).lines() == ["reloaded: plugins (none)"]


def test_every_key_is_marked_live_or_restart() -> None:
    """The data paths and the listening sockets need a restart; limits do not."""
    assert config.needs_restart(config.ServerSettings, "data_dir")
    assert config.needs_restart(config.ListenerSettings, "port")
    assert config.needs_restart(config.SpoolSettings, "dir")
    assert not config.needs_restart(config.SMTPSettings, "max_message_size")
    assert not config.needs_restart(config.TLSSettings, "cert")
    assert not config.needs_restart(config.QueueSettings, "retry_minutes")
