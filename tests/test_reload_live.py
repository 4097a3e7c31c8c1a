"""Reloads that never fail silently, over a real server (DESIGN 4, "Hot reload").

- a plugin switched on only for a domain that cannot load, or refuses its settings, fails
  `mailmax reload`, the admin channel and SIGHUP, and the old plugin set keeps serving;
- `mailmax plugin set` with a value the plugin refuses writes nothing and exits 1;
- settings that can change live do, for new connections; keys that need a restart are named;
- a reload reopens the log file (log rotation);
- a reload swaps the TLS certificate for new handshakes.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import ssl
from pathlib import Path

import pytest

from mailmax.core import admin
from mailmax.core.tls import write_self_signed
from mailmax.testing import DOMAIN, TestServer, start_server

PLUGIN = """
from mailmax.plugin import Field, PluginSettings, hookimpl, reject

class Settings(PluginSettings):
    limit: int = Field(1, ge=1, le=5, description="Any small number.")

@hookimpl
def mailmax_configure(config):
    if config.limit == 3:
        raise ValueError("limit 3 is unlucky")

@hookimpl
def mailmax_rcpt_to(recipient, config):
    if recipient.address.startswith("bob@"):
        return reject("bob refused by VERSION", 550, "5.7.1")
    return None
"""


def plugin_source(version: str) -> str:
    return PLUGIN.replace("VERSION", version)


def probe(server: TestServer) -> tuple[int, bytes]:
    """RCPT TO bob on a new connection."""
    with server.smtp() as client:
        client.ehlo("client.test")
        client.mail("someone@sender.test")
        return client.rcpt(f"bob@{DOMAIN}")


def test_domain_only_plugin_that_cannot_load_fails_every_reload(tmp_path: Path) -> None:
    """A plugin on for one domain only that has a syntax error, or a domain override it
    refuses, fails `mailmax reload` (exit 1, with the reason and where it is on), the admin
    channel and SIGHUP; the old plugin set keeps refusing bob."""
    server = start_server(
        tmp_path / "server", plugins=["aliases"], plugin_files={"greet.py": plugin_source("v1")}
    )
    try:
        server.cli("plugin", "enable", "greet", "--domain", DOMAIN)
        result = server.reload()
        assert result.returncode == 0, result.stderr
        assert "reloaded: plugins aliases, greet" in result.stdout
        assert probe(server) == (550, b"5.7.1 bob refused by v1")

        (server.data_dir / "plugins" / "greet.py").write_text(
            plugin_source("v2") + "\ndef broken(:\n"
        )
        result = server.reload()
        assert result.returncode == 1
        assert "reload refused, nothing changed" in result.stderr
        assert "syntax error" in result.stderr and "greet.py" in result.stderr
        assert f"switched on for domain {DOMAIN}" in result.stderr
        assert probe(server) == (550, b"5.7.1 bob refused by v1")

        with pytest.raises(admin.AdminError, match="reload refused, nothing changed"):
            admin.request(server.data_dir, "reload")

        log_before = server.log_text().count("reload refused, nothing changed")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(
            lambda: server.log_text().count("reload refused, nothing changed") > log_before,
            what="the SIGHUP reload to be refused",
        )
        assert probe(server) == (550, b"5.7.1 bob refused by v1")

        # the code is fixed, but the domain's override (written behind the CLI's back) has a
        # value the plugin refuses: the reload fails, and the running set fails closed (4xx)
        (server.data_dir / "plugins" / "greet.py").write_text(plugin_source("v3"))
        with server.directory() as directory:
            directory.set_plugin_override(
                "greet", "domain", DOMAIN, enabled=True, settings={"limit": 9}
            )
        result = server.reload()
        assert result.returncode == 1
        assert "limit=9 is not allowed" in result.stderr
        server.wait_for(lambda: probe(server)[0] == 451, what="the bad override to fail closed")

        with server.directory() as directory:
            directory.set_plugin_override(
                "greet", "domain", DOMAIN, enabled=True, settings={"limit": 2}
            )
        assert server.reload().returncode == 0
        assert probe(server) == (550, b"5.7.1 bob refused by v3")
    finally:
        server.stop()


def test_plugin_set_with_a_refused_value_writes_nothing(tmp_path: Path) -> None:
    """`plugin set` with a value the plugin's configure refuses (system) or its settings do
    not allow (domain) exits 1 with the plugin's reason; the config file and the directory
    stay as they were, and the server still reloads."""
    server = start_server(
        tmp_path / "server",
        plugins=["aliases", "greet"],
        plugin_files={"greet.py": plugin_source("v1")},
    )
    try:
        before = server.config_path.read_bytes()
        result = server.cli("plugin", "set", "greet", "limit=3", check=False)
        assert result.returncode == 1
        assert "refused, nothing changed" in result.stderr
        assert "limit 3 is unlucky" in result.stderr
        assert server.config_path.read_bytes() == before
        assert list(server.config_path.parent.glob(".mailmax.toml.*")) == []

        result = server.cli("plugin", "set", "greet", "limit=9", "--domain", DOMAIN, check=False)
        assert result.returncode == 1
        assert "less than or equal to 5" in result.stderr
        with server.directory() as directory:
            assert directory.get_plugin_overrides("greet") == {}

        result = server.cli("plugin", "set", "greet", "limit=4")
        assert "greet settings changed system-wide" in result.stdout
        assert "limit = 4" in server.config_path.read_text()
        result = server.reload()
        assert result.returncode == 0, result.stderr
        assert "applied: plugins.settings" in result.stdout
    finally:
        server.stop()


def ehlo_size(client: smtplib.SMTP) -> int:
    client.ehlo("client.test")
    return int(client.esmtp_features["size"])


def test_reload_applies_limits_and_networks_to_new_connections(tmp_path: Path) -> None:
    """max_message_size and trusted_networks changed and reloaded apply to the next
    connection (an open session keeps its limits); a changed listener port and hostname are
    named as needing a restart, keep their running values, and the reload still exits 0."""
    server = start_server(tmp_path / "server", sections={"smtp": {"max_message_size": 10000}})
    try:
        old = server.smtp()
        assert ehlo_size(old) == 10000
        with server.smtp() as client:
            client.ehlo("client.test")
            assert client.mail("a@sender.test", ["SIZE=15000"])[0] == 552
            client.rset()
            client.mail("a@sender.test")
            assert client.rcpt("someone@remote.test") == (554, b"5.7.1 Relay access denied")

        server.sections["smtp"] = {"max_message_size": 20000, "trusted_networks": ["127.0.0.0/8"]}
        server.write_config()
        result = server.reload()
        assert result.returncode == 0, result.stderr
        assert "applied: smtp.max_message_size, smtp.trusted_networks" in result.stdout
        assert "restart" not in result.stdout

        assert ehlo_size(old) == 10000  # the open session keeps what it started with
        old.quit()
        with server.smtp() as client:
            assert ehlo_size(client) == 20000
            assert client.mail("a@sender.test", ["SIZE=15000"])[0] == 250
            assert client.rcpt("someone@remote.test")[0] == 250

        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            free_port = spare.getsockname()[1]
        server.sections["listeners"][0]["port"] = free_port
        server.sections["server"]["hostname"] = "other.example.test"
        server.sections["smtp"]["max_message_size"] = 30000
        server.write_config()
        result = server.reload()
        assert result.returncode == 0, result.stderr
        assert "applied: smtp.max_message_size" in result.stdout
        assert "not applied, needs a restart (running with the old value):" in result.stdout
        assert "listeners: smtp on 127.0.0.1:0 is no longer configured" in result.stdout
        assert f"listeners: smtp on 127.0.0.1:{free_port} is new" in result.stdout
        assert 'server.hostname ("mail.example.test" -> "other.example.test")' in result.stdout
        with server.smtp() as client:  # the old port still serves, under the old name
            assert ehlo_size(client) == 30000
            assert client.ehlo_resp is not None
            assert client.ehlo_resp.startswith(b"mail.example.test")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", free_port), timeout=5).close()

        result = server.cli("--json", "reload", check=False)
        assert result.returncode == 0
        assert '"applied": []' in result.stdout and '"restart": [' in result.stdout
    finally:
        server.stop()


def test_reload_reopens_the_log_file(tmp_path: Path) -> None:
    """After the log file is renamed (log rotation), `mailmax reload` and SIGHUP make new lines
    go to a new file at the original path; the renamed file gets no more lines. A refused
    reload reopens the file as well."""
    server = start_server(tmp_path / "server")
    try:
        log = server.data_dir / "mailmax.log"
        rotated = server.data_dir / "mailmax.log.1"
        log.rename(rotated)
        assert server.reload().returncode == 0
        with server.smtp() as client:
            client.ehlo("client.test")
        server.wait_for(lambda: log.exists() and "connection " in log.read_text(), what="new log")
        assert "reloaded: plugins" in log.read_text()
        size = rotated.stat().st_size

        log.rename(server.data_dir / "mailmax.log.2")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(log.exists, what="the log reopened by SIGHUP")
        with server.smtp() as client:
            client.ehlo("client.test")
        server.wait_for(lambda: "connection " in log.read_text(), what="a line in the new log")
        assert rotated.stat().st_size == size

        # a refused reload reopens the log too, and says why in the new file
        log.rename(server.data_dir / "mailmax.log.3")
        server.sections["smtp"] = {"max_hopz": 1}
        server.write_config()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(
            lambda: log.exists() and "reload refused, nothing changed" in log.read_text(),
            what="the refused reload's reason in the new log",
        )
        assert "max_hopz" in log.read_text()
    finally:
        server.stop()


def peer_certificate(server: TestServer) -> bytes | None:
    """The certificate a new STARTTLS handshake gets (None: STARTTLS is not offered)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with server.smtp() as client:
        client.ehlo("client.test")
        if not client.has_extn("starttls"):
            return None
        client.starttls(context=context)
        assert isinstance(client.sock, ssl.SSLSocket)
        return client.sock.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_reload_swaps_the_tls_certificate(tmp_path: Path) -> None:
    """A certificate added or replaced is used by the next handshake after a reload; a
    certificate that cannot be used refuses the reload and the old one stays."""
    server = start_server(tmp_path / "server")
    try:
        cert, key = server.data_dir / "tls" / "cert.pem", server.data_dir / "tls" / "key.pem"
        assert peer_certificate(server) is None

        write_self_signed(cert, key, ["first.example.test"])
        result = server.reload()
        assert result.returncode == 0 and "applied" not in result.stdout
        first = der(cert)
        assert peer_certificate(server) == first

        write_self_signed(cert, key, ["second.example.test"])
        assert server.reload().returncode == 0
        assert peer_certificate(server) == der(cert) != first

        second = der(cert)
        key.write_text("not a key\n")
        result = server.reload()
        assert result.returncode == 1
        assert "not a matching PEM certificate and key" in result.stderr
        assert peer_certificate(server) == second
    finally:
        server.stop()
