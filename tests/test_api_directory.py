"""The admin API on users, aliases, forwarding, administrators, tokens, reload (M1, M2, A13)."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from tests.api_support import ApiClient, admin_cli, api_server  # noqa: F401  (the fixture)
from tests.fixtures.server import DOMAIN

OTHER = "other.test"


@pytest.fixture(scope="module")
def setup(api_server):  # noqa: F811
    """A second domain with a user, a system token (postmaster) and a domain admin token
    (alice, for example.test)."""
    server = api_server
    admin_cli(server, "domain", "add", OTHER)
    admin_cli(server, "user", "add", f"carol@{OTHER}", "--password", "carol long secret")
    admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
    admin_cli(server, "admin", "grant", f"alice@{DOMAIN}", "--domain", DOMAIN)
    system = admin_cli(server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "t")
    domain = admin_cli(server, "admin", "token", "create", f"alice@{DOMAIN}", "--name", "a")
    return {"client": ApiClient(server), "system": system.strip(), "domain": domain.strip(),
            "server": server}  # fmt: skip


def test_users_list_filters(setup):
    """M2: users by domain, name, type, SMTP AUTH switched off and administrator flag."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    every = client.call("GET", "/api/v1/users", system).body
    assert [u["address"] for u in every["items"]] == [
        f"alice@{DOMAIN}",
        f"bob@{DOMAIN}",
        f"postmaster@{DOMAIN}",
        f"carol@{OTHER}",
    ]
    assert "password_hash" not in every["items"][0] and every["items"][0]["password"] == "set"
    mine = client.call("GET", "/api/v1/users", domain).body
    assert {u["domain"] for u in mine["items"]} == {DOMAIN}
    admins = client.call("GET", "/api/v1/users?admin=true", system).body
    assert [u["address"] for u in admins["items"]] == [f"alice@{DOMAIN}", f"postmaster@{DOMAIN}"]
    assert client.call("GET", "/api/v1/users?q=car", system).body["total"] == 1
    assert client.call("GET", f"/api/v1/users?domain={OTHER}", domain).status == 403
    client.call("PATCH", f"/api/v1/users/bob@{DOMAIN}", domain, {"smtp_auth": False})
    off = client.call("GET", "/api/v1/users?smtp_auth=false", system).body
    assert [u["address"] for u in off["items"]] == [f"bob@{DOMAIN}"]
    client.call("PATCH", f"/api/v1/users/bob@{DOMAIN}", domain, {"smtp_auth": True})
    by_type = client.call("GET", "/api/v1/users?type=disabled", system).body
    assert by_type["items"] == []


def test_domain_admin_manages_users_of_their_domain_only(setup):
    """A13: a domain administrator adds, changes, re-passwords and deletes users of their
    domain; the new user logs in over IMAP at once; another domain is 403."""
    client, token, server = setup["client"], setup["domain"], setup["server"]
    made = client.call("POST", "/api/v1/users", token,
                       {"address": f"dave@{DOMAIN}", "password": "dave first secret",
                        "first_name": "Dave"})  # fmt: skip
    assert made.status == 201, made.raw
    assert made.body["first_name"] == "Dave"
    assert client.call("PUT", f"/api/v1/users/dave@{DOMAIN}/password", token,
                       {"password": "dave second secret"}).status == 204  # fmt: skip
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"]) as imap:
        imap.starttls(server.ssl_context())
        assert imap.login(f"dave@{DOMAIN}", "dave second secret")[0] == "OK"
    refused = client.call("POST", "/api/v1/users", token,
                          {"address": f"eve@{OTHER}", "password": "x long secret"})  # fmt: skip
    assert refused.status == 403
    duplicate = client.call("POST", "/api/v1/users", token,
                            {"address": f"dave@{DOMAIN}", "password": "x long secret"})  # fmt: skip
    assert duplicate.status == 409 and "already exists" in duplicate.body["error"]["message"]
    limited = client.call("PATCH", f"/api/v1/users/dave@{DOMAIN}", token,
                          {"daily_send_messages": 5})  # fmt: skip
    assert limited.status == 200 and limited.body["daily_send_messages"] == 5
    assert limited.body["daily_limits_enabled"] is True
    unlocked = client.call("POST", f"/api/v1/users/dave@{DOMAIN}/unlock", token)
    assert unlocked.body["unlocked"] is False and "was not locked" in unlocked.body["message"]
    gone = client.call("DELETE", f"/api/v1/users/dave@{DOMAIN}?mode=remove", token)
    assert gone.status == 204
    assert client.call("GET", f"/api/v1/users/dave@{DOMAIN}", token).status == 404
    assert client.call("GET", f"/api/v1/users/carol@{OTHER}", token).status == 403
    assert client.call("GET", f"/api/v1/users/nobody@{OTHER}", token).status == 403


def test_aliases_and_forwarding_take_effect_for_smtp(setup):
    """M1: an alias and a forward set through the API route the next SMTP message."""
    client, token, server = setup["client"], setup["domain"], setup["server"]
    made = client.call("POST", "/api/v1/aliases", token,
                       {"address": f"team@{DOMAIN}", "targets": ["bob"]})  # fmt: skip
    assert made.status == 201 and made.body["targets"] == [f"bob@{DOMAIN}"]
    assert client.call("GET", "/api/v1/aliases", token).body["total"] == 1
    loop = client.call("PUT", f"/api/v1/aliases/team@{DOMAIN}", token, {"targets": ["team"]})
    assert loop.status == 422
    forward = client.call("PUT", f"/api/v1/users/alice@{DOMAIN}/forward", token,
                          {"targets": [f"bob@{DOMAIN}"], "keep_local_copy": False})  # fmt: skip
    assert forward.status == 200 and forward.body["targets"] == [f"bob@{DOMAIN}"]
    assert client.call("POST", "/api/v1/reload", setup["system"]).status == 200
    before = len(server.messages(f"bob@{DOMAIN}"))
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("x@example.org", [f"team@{DOMAIN}"], b"Subject: team\r\n\r\nhi\r\n")
        smtp.sendmail("x@example.org", [f"alice@{DOMAIN}"], b"Subject: fwd\r\n\r\nhi\r\n")
    got = server.wait_for_mail(f"bob@{DOMAIN}", before + 2, timeout=30)
    assert {b"Subject: team" in m or b"Subject: fwd" in m for m in got[before:]} == {True}
    assert client.call("DELETE", f"/api/v1/users/alice@{DOMAIN}/forward", token).status == 204
    stopped = client.call("GET", f"/api/v1/users/alice@{DOMAIN}/forward", token).body
    assert stopped["enabled"] is False and stopped["targets"] == []  # nothing to forward to
    assert client.call("DELETE", f"/api/v1/aliases/team@{DOMAIN}", token).status == 204
    assert client.call("GET", f"/api/v1/aliases/x@{OTHER}", token).status == 403


def test_administrators_and_tokens_through_the_api(setup):
    """A13: a system admin grants and revokes; a domain admin makes and revokes only their
    own tokens; a revoked token stops at once."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    granted = client.call("POST", f"/api/v1/admins/carol@{OTHER}/grant", system,
                          {"domains": [OTHER]})  # fmt: skip
    assert granted.body == {"address": f"carol@{OTHER}", "system": False, "domains": [OTHER]}
    made = client.call("POST", "/api/v1/tokens", system,
                       {"admin": f"carol@{OTHER}", "name": "carol's", "days": 1})  # fmt: skip
    carol = made.body["token"]
    assert client.call("GET", "/api/v1/whoami", carol).body["domains"] == [OTHER]
    foreign = client.call("POST", "/api/v1/tokens", domain,
                          {"admin": f"carol@{OTHER}", "name": "x"})  # fmt: skip
    assert foreign.status == 403
    own = client.call("POST", "/api/v1/tokens", domain, {"admin": f"alice@{DOMAIN}", "name": "y"})
    assert own.status == 201
    listed = client.call("GET", "/api/v1/tokens", domain).body
    assert {t["admin"] for t in listed} == {f"alice@{DOMAIN}"}
    assert client.call("DELETE", f"/api/v1/tokens/{made.body['id']}", domain).status == 422
    assert client.call("DELETE", f"/api/v1/tokens/{own.body['id']}", domain).status == 204
    revoked = client.call("POST", f"/api/v1/admins/carol@{OTHER}/revoke", system, {})
    assert revoked.body == {"admin": None}
    assert client.call("GET", "/api/v1/whoami", carol).status == 401
    audit = client.call("GET", "/api/v1/audit?limit=5", system).body
    assert audit[0]["action"] == "admin.revoke" and audit[0]["actor"] == f"postmaster@{DOMAIN}"
    mine = client.call("GET", "/api/v1/audit", domain).body
    assert mine and {e["actor"] for e in mine} == {f"alice@{DOMAIN}"}


def test_reload_and_server_state(setup):
    """M1: reload and failed-login blocks through the API, for system administrators."""
    client, system = setup["client"], setup["system"]
    answer = client.call("POST", "/api/v1/reload", system)
    assert answer.status == 200 and "aliases" in answer.body["plugins"]
    assert client.call("GET", "/api/v1/auth/blocked", system).body == []
    missing = client.call("DELETE", "/api/v1/auth/blocked/192.0.2.1", system)
    assert missing.status == 409 and "no failed logins" in missing.body["error"]["message"]
    status = client.call("GET", "/api/v1/antivirus/status", system)
    assert status.status == 409 and "not loaded" in status.body["error"]["message"]


def test_plugins_per_scope(setup):
    """M1, A13: a domain administrator switches and configures a plugin for their domain and
    users, never system-wide; a bad value is refused with the reason."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    listed = client.call("GET", "/api/v1/plugins", domain).body
    assert "forwarding" in {p["name"] for p in listed["plugins"]}
    switched = client.call("PUT", "/api/v1/plugins/forwarding/enabled", domain,
                           {"enabled": False, "domain": DOMAIN})  # fmt: skip
    assert switched.status == 200 and switched.body["scope"] == "domain", switched.raw
    shown = client.call("GET", f"/api/v1/plugins/forwarding?domain={DOMAIN}", domain).body
    assert shown["enabled"] is False
    client.call("PUT", "/api/v1/plugins/forwarding/enabled", domain,
                {"enabled": True, "domain": DOMAIN})  # fmt: skip
    bad = client.call(
        "PATCH",
        "/api/v1/plugins/forwarding/settings",
        domain,
        {"user": f"bob@{DOMAIN}", "settings": {"targets": ["not an address"]}},
    )
    assert bad.status == 422 and "not an address" in bad.body["error"]["message"]
    assert client.call("PUT", "/api/v1/plugins/forwarding/enabled", domain,
                       {"enabled": False}).status == 403  # fmt: skip
    assert client.call("GET", "/api/v1/plugins/forwarding", domain).status == 403
    assert client.call("GET", f"/api/v1/plugins/forwarding?domain={OTHER}", domain).status == 403
    assert client.call("GET", "/api/v1/plugins/nosuch", system).status == 404
    assert client.call("GET", "/api/v1/plugin-check", system).body == {"ok": True, "problems": []}


def test_mailbox_move_is_for_system_administrators_of_a_cluster(setup):
    """Q14, A13: a domain administrator may not move a mailbox (403, with the same words for
    any address); a system administrator of a server outside a cluster is told why not."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    for address in (f"alice@{DOMAIN}", f"nobody@{DOMAIN}", f"carol@{OTHER}"):
        refused = client.call("POST", f"/api/v1/users/{address}/move", domain, {"node": "b"})
        assert refused.status == 403, refused.raw
        assert refused.body["error"]["message"] == "only a system administrator may do this"
    alone = client.call("POST", f"/api/v1/users/alice@{DOMAIN}/move", system, {"node": "b"})
    assert alone.status == 422, alone.raw
    assert alone.body["error"]["message"] == (
        "no cluster is configured: this server is not a node of a cluster ([cluster] node is "
        "not set); the mailbox stays where it was"
    )
    assert client.call("POST", f"/api/v1/users/alice@{DOMAIN}/move", system, {}).status == 422
