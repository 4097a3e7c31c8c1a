"""The aliases plugin over real SMTP: user aliases (A9), also in aliased domains (A3)."""

from __future__ import annotations

from mailmax.testing import TestServer
from tests.plugins_builtin.support import rcpt, refused, send


def test_aliases_deliver_also_through_domain_aliases(mailmax_server) -> None:
    """A9/A3: an alias delivers to its targets, by its own domain or an alias of it; an unknown
    name stays unknown (550); switching the plugin off for the domain refuses the alias."""
    server: TestServer = mailmax_server()
    server.cli("domain", "alias", "add", "mail.example.test", "example.test")
    server.cli("alias", "add", "sales@example.test", "alice@example.test", "bob@mail.example.test")
    assert rcpt(server, "sales@example.test") == 250
    assert rcpt(server, "SALES@mail.example.test") == 250
    assert rcpt(server, "alice@mail.example.test") == 250
    assert refused(server, "nobody@example.test")
    assert send(server, ["sales@mail.example.test"], subject="to the team") == {}
    for user in ("alice@example.test", "bob@example.test"):
        (message,) = server.wait_for_mail(user)
        assert b"Subject: to the team" in message

    server.cli("plugin", "disable", "aliases", "--domain", "example.test")
    server.wait_for(lambda: refused(server, "sales@example.test"), what="alias refused")
    assert rcpt(server, "alice@example.test") == 250  # users are not the plugin's business
    server.cli("plugin", "enable", "aliases", "--domain", "example.test")
    server.wait_for(lambda: rcpt(server, "sales@example.test") == 250, what="alias back")


def test_an_alias_may_not_shadow_a_user_or_a_real_domain(mailmax_server) -> None:
    """A9, A3, M4: refused with a message that says what to do."""
    server: TestServer = mailmax_server(plugins=["aliases"])
    result = server.cli("alias", "add", "alice@example.test", "bob@example.test", check=False)
    assert result.returncode == 1
    assert "is a user; an alias may not collide with a user" in result.stderr
    server.cli("domain", "add", "other.test", "--mail-dir", str(server.data_dir / "mail/o"))
    result = server.cli("domain", "alias", "add", "other.test", "example.test", check=False)
    assert result.returncode == 1 and "is a real domain" in result.stderr
    server.cli("alias", "add", "team@example.test", "bob@example.test")
    result = server.cli("user", "add", "team@example.test", "--password", "x" * 12, check=False)
    assert result.returncode == 1 and "already an alias" in result.stderr
