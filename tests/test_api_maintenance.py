"""Housekeeping, and the other command-line tasks, through the admin API over real HTTPS: a
system administrator runs them for the whole system, a domain administrator for their domain
only, and what a run removes is gone for the user's IMAP client."""

from __future__ import annotations

import imaplib
import json
import ssl
import time

import pytest

from tests.api_support import ApiClient, admin_cli, api_server  # noqa: F401
from tests.fixtures.server import DOMAIN, USERS

OTHER = "other.test"
ALICE = f"alice@{DOMAIN}"
DAY = 86400


@pytest.fixture(scope="module")
def setup(api_server):  # noqa: F811
    """Housekeeping on for the test domain (30 days), another domain, a system token and a
    token of a domain administrator of the test domain."""
    server = api_server
    admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
    admin_cli(server, "admin", "grant", f"bob@{DOMAIN}", "--domain", DOMAIN)
    admin_cli(server, "domain", "add", OTHER)
    admin_cli(server, "plugin", "enable", "housekeeping", "--domain", DOMAIN)
    admin_cli(server, "plugin", "enable", "autoreply", "--domain", DOMAIN)
    admin_cli(server, "plugin", "set", "housekeeping", "remove_after_days=30", "--domain", DOMAIN)
    system = admin_cli(server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "s")
    domain = admin_cli(server, "admin", "token", "create", f"bob@{DOMAIN}", "--name", "d")
    return {"client": ApiClient(server), "system": system.strip(), "domain": domain.strip(),
            "server": server}  # fmt: skip


def _imap(server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("localhost", server.ports["imap"])
    imap.starttls(ssl.create_default_context(cafile=str(server.cert_path)))
    imap.login(ALICE, USERS["alice"])
    return imap


def test_housekeeping_run_through_the_api(setup):
    """S6: a dry run says what would go and removes nothing; the real run removes the old
    message (IMAP sees one left); the report lines are the command line's."""
    client, system, server = setup["client"], setup["system"], setup["server"]
    imap = _imap(server)
    try:
        imap.create("Trash")
        old = time.time() - 40 * DAY
        assert imap.append("Trash", None, old, b"Subject: old\r\n\r\nold\r\n")[0] == "OK"
        assert imap.append("Trash", None, time.time(), b"Subject: new\r\n\r\nnew\r\n")[0] == "OK"
    finally:
        imap.logout()

    dry = client.call("POST", "/api/v1/housekeeping/run", system, {"dry_run": True})
    assert dry.status == 200, dry.raw
    assert dry.body["dry_run"] and dry.body["domains"] == [DOMAIN]
    assert f"{ALICE} Trash: would remove 1 message(s)" in dry.body["lines"][0]
    assert dry.body["lines"][-1] == "1 domain(s): 1 folder(s) to clean, 0 idle user(s)"

    done = client.call("POST", "/api/v1/housekeeping/run", system, {"domain": DOMAIN})
    assert done.status == 200, done.raw
    assert f"{ALICE} Trash: removed 1 message(s)" in done.body["lines"][0]
    imap = _imap(server)
    try:
        assert imap.select("Trash", readonly=True) == ("OK", [b"1"])
    finally:
        imap.logout()
    assert "housekeeping.run" in admin_cli(server, "admin", "audit", "--json")


def test_housekeeping_run_by_a_domain_administrator(setup):
    """S6: a domain administrator runs it for their domain, never for all or another."""
    client, domain = setup["client"], setup["domain"]
    own = client.call(
        "POST", "/api/v1/housekeeping/run", domain, {"dry_run": True, "domain": DOMAIN}
    )
    assert own.status == 200 and own.body["domains"] == [DOMAIN], own.raw
    every = client.call("POST", "/api/v1/housekeeping/run", domain, {"dry_run": True})
    assert every.status == 403, every.raw
    other = client.call("POST", "/api/v1/housekeeping/run", domain, {"domain": OTHER})
    assert other.status == 403, other.raw
    missing = client.call(
        "POST", "/api/v1/housekeeping/run", setup["system"], {"domain": "no.test"}
    )
    assert missing.status == 404 and "not served here" in missing.body["error"]["message"]
    bad = client.call("POST", "/api/v1/housekeeping/run", setup["system"], {"dry": True})
    assert bad.status == 422


def test_antivirus_for_every_user_of_a_domain(setup):
    """AV5: the switch reaches each user of the domain; a domain administrator may switch
    their domain only; an unknown domain is 404."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    path = f"/api/v1/domains/{DOMAIN}/antivirus"
    off = client.call("PUT", path, system, {"enabled": False})
    assert off.status == 200, off.raw
    assert (
        off.body["message"] == f"antivirus switched off for {off.body['users']} users of {DOMAIN}"
    )
    shown = client.call("GET", f"/api/v1/plugins/antivirus?user={ALICE}", system).body
    assert (shown["enabled"], shown["enabled_from"]) == (False, f"user {ALICE}"), shown
    on = client.call("PUT", path, domain, {"enabled": True})
    assert on.status == 200 and on.body["enabled"], on.raw
    shown = client.call("GET", f"/api/v1/plugins/antivirus?user={ALICE}", domain).body
    assert shown["enabled"] is True, shown
    refused = client.call("PUT", f"/api/v1/domains/{OTHER}/antivirus", domain, {"enabled": True})
    assert refused.status == 403, refused.raw
    missing = client.call("PUT", "/api/v1/domains/no.test/antivirus", system, {"enabled": True})
    assert missing.status == 404, missing.raw


def test_ldap_test_refusals(setup):
    """S5: an address of a SQL domain is refused with the command line's words; a domain
    administrator may not ask about another domain; an unknown domain is 404."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    sql = client.call("POST", "/api/v1/ldap/test", domain, {"address": ALICE})
    assert sql.status == 422, sql.raw
    assert sql.body["error"]["message"].startswith(f"the users of {DOMAIN} are kept in SQL")
    other = client.call("POST", "/api/v1/ldap/test", domain, {"address": f"x@{OTHER}"})
    assert other.status == 403, other.raw
    missing = client.call("POST", "/api/v1/ldap/test", system, {"address": "x@no.test"})
    assert missing.status == 404, missing.raw


def test_config_check_and_show(setup):
    """C3: a system administrator checks the config file and reads the configuration in
    force (as the command line shows them); a domain administrator may not."""
    client, system, domain, server = (setup[k] for k in ("client", "system", "domain", "server"))
    checked = client.call("GET", "/api/v1/config/check", system)
    assert checked.status == 200, checked.raw
    assert checked.body["ok"] is True and checked.body["problems"] == []
    assert checked.body["config"] == str(server.config_path.resolve())
    shown = client.call("GET", "/api/v1/config", system)
    assert shown.status == 200, shown.raw
    cli = json.loads(admin_cli(server, "config", "show", "--json"))
    assert shown.body["server"] == cli["server"] and shown.body["admin"] == cli["admin"]
    for path in ("/api/v1/config/check", "/api/v1/config"):
        assert client.call("GET", path, domain).status == 403
    text = server.config_path.read_text()
    try:
        server.config_path.write_text(text + "\n[server\n")
        broken = client.call("GET", "/api/v1/config/check", system).body
        assert broken["ok"] is False and "not valid TOML" in broken["problems"][0], broken
    finally:
        server.config_path.write_text(text)


def test_autoreply_through_the_api(setup):
    """R4: a domain administrator sets, shows and switches off a user's auto-responder in the
    command line's words; another domain's user is refused; a reply with nothing to say is
    refused and nothing is written."""
    client, system, domain = setup["client"], setup["system"], setup["domain"]
    path = f"/api/v1/users/{ALICE}/autoreply"
    empty = client.call("PUT", path, domain, {"days": 3})
    assert empty.status == 422 and "a reply needs something to say" in empty.raw.decode()
    shown = client.call("GET", path, domain).body
    assert (shown["answering"], shown["plugin_enabled"]) == (False, True), shown
    made = client.call("PUT", path, domain, {"subject": "Away", "text": "Back on Monday."})
    assert made.status == 200, made.raw
    assert made.body["message"] == f"autoreply settings changed for user {ALICE}"
    shown = client.call("GET", path, system).body
    assert shown["answering"] is True and shown["settings"]["text"] == "Back on Monday."
    off = client.call("DELETE", path, domain)
    assert off.status == 200 and client.call("GET", path, domain).body["answering"] is False
    assert client.call("GET", path, domain).body["settings"]["subject"] == "Away"
    other = client.call("PUT", f"/api/v1/users/carol@{OTHER}/autoreply", domain, {"text": "x"})
    assert other.status == 403, other.raw


def test_old_audit_entries_are_dropped_by_the_running_server(setup):
    """M3: the server drops audit entries older than a year (the default retention) after a
    reload as it does daily; recent ones stay."""
    from mailmax.core.directory.admins import AdminStore
    from mailmax.core.directory.sql import SQLDirectory
    from tests.api_support import wait_for

    client, token, server = setup["client"], setup["system"], setup["server"]
    directory = SQLDirectory.open(f"sqlite:///{server.data_dir / 'mailmax.db'}",
                                  base_dir=server.data_dir)  # fmt: skip
    try:
        for days, target in ((400, "ancient.test"), (300, "recent.test")):
            store = AdminStore(directory, clock=lambda days=days: time.time() - days * DAY)
            store.audit("cli:root", "cli", "domain.add", target, {})
    finally:
        directory.close()

    def targets() -> set[str]:
        found = client.call("GET", "/api/v1/audit?limit=1000", token).body
        return {entry["target"] for entry in found}

    assert {"ancient.test", "recent.test"} <= targets()
    assert client.call("POST", "/api/v1/reload", token).status == 200
    wait_for(lambda: "ancient.test" not in targets(), what="the old entry dropped")
    assert "recent.test" in targets()
