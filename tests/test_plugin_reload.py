"""Hot reload of plugin code and settings over a real server, and failure isolation (DESIGN 4).

The plugin under test lives in the server's plugins directory; the test rewrites it on disk.
"""

from __future__ import annotations

import signal
import smtplib
from pathlib import Path

from mailmax.testing import TestServer, start_server

PLUGIN = """
from mailmax.plugin import Field, PluginSettings, hookimpl, reject

class Settings(PluginSettings):
    limit: int = Field(1, ge=1, le=5, description="Any small number.")

@hookimpl
def mailmax_rcpt_to(recipient, config):
    local = recipient.address.partition("@")[0]
    if local == "bob":
        return reject("bob refused by VERSION", 550, "5.7.1")
    if local == "postmaster":
        raise RuntimeError("the plugin fell over")
    return None
"""


def write(server: TestServer, version: str, source: str = PLUGIN) -> None:
    path = server.data_dir / "plugins" / "greet.py"
    path.write_text(source.replace("VERSION", version))


def probe(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.rset()
    client.mail("someone@sender.test")
    return client.rcpt("bob@example.test")


def new_session(server: TestServer) -> smtplib.SMTP:
    client = server.smtp()
    client.ehlo("client.test")
    return client


def test_reload_swaps_plugins_for_new_sessions_only(tmp_path: Path) -> None:
    """An open session keeps the old code; a new one gets the new code; no connection drops;
    `mailmax reload`, the admin channel and SIGHUP all reload; failed reloads change nothing and
    say why; a plugin that raises gives 451 and names itself in the log."""
    server = start_server(
        tmp_path / "server",
        plugins=["aliases", "greet"],
        plugin_files={"greet.py": PLUGIN.replace("VERSION", "v1")},
    )
    try:
        old = new_session(server)
        assert probe(old) == (550, b"5.7.1 bob refused by v1")

        write(server, "v2")
        result = server.reload()
        assert result.returncode == 0, result.stderr
        assert "reloaded: plugins aliases, greet" in result.stdout
        assert probe(old) == (550, b"5.7.1 bob refused by v1")  # the session's own set
        fresh = new_session(server)
        assert probe(fresh) == (550, b"5.7.1 bob refused by v2")

        # a syntax error: refused, nothing changes, the reason is in the CLI and the log
        write(server, "v3", PLUGIN + "\ndef broken(:\n")
        result = server.reload()
        assert result.returncode == 1
        assert "reload refused, nothing changed" in result.stderr
        assert "syntax error" in result.stderr and "greet.py" in result.stderr
        assert probe(new_session(server)) == (550, b"5.7.1 bob refused by v2")
        assert "reload refused, nothing changed" in server.log_text()

        # a bad setting: refused with what is allowed
        write(server, "v4")
        server.sections["plugins.settings.greet"] = {"limit": 9}
        server.write_config()
        result = server.reload()
        assert result.returncode == 1
        assert (
            "limit=9 is not allowed" in result.stderr and "less than or equal to 5" in result.stderr
        )
        assert probe(new_session(server)) == (550, b"5.7.1 bob refused by v2")

        # fixed: SIGHUP reloads too
        server.sections["plugins.settings.greet"] = {"limit": 2}
        server.write_config()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(
            lambda: probe(new_session(server))[1] == b"5.7.1 bob refused by v4", what="SIGHUP"
        )

        # every session opened above is still connected
        for client in (old, fresh):
            assert client.noop()[0] == 250
            client.quit()

        # failure isolation: 451 for that recipient, the session and the server go on
        client = new_session(server)
        client.mail("someone@sender.test")
        code, text = client.rcpt("postmaster@example.test")
        assert code == 451 and text.startswith(b"4.3.0")
        assert client.rcpt("alice@example.test")[0] == 250
        client.quit()
        assert "plugin greet failed in mailmax_rcpt_to" in server.log_text()
    finally:
        server.stop()


def test_reload_without_a_running_server_is_an_error(tmp_path: Path) -> None:
    """`mailmax reload` says there is no server (exit status 1)."""
    server = TestServer(tmp_path, {"server": {"hostname": "x.test"}}, [])
    server.write_config()
    result = server.reload()
    assert result.returncode == 1
    assert "no running server" in result.stderr
