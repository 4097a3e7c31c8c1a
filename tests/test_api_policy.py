"""Access rules and mail rules through the admin API over real HTTPS: a system administrator
manages both, a domain administrator the rules of their domain and its users only, and what
the API changes is seen by SMTP and IMAP sessions."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl

import pytest

from tests.api_support import ApiClient, admin_cli, api_server, wait_for  # noqa: F401
from tests.fixtures.server import DOMAIN, USERS

OTHER = "other.test"
ALICE = f"alice@{DOMAIN}"
INVOICE = b"From: shop@vendor.example\r\nSubject: your invoice 42\r\n\r\nPay now.\r\n"


@pytest.fixture(scope="module")
def setup(api_server):  # noqa: F811
    """The access and rules plugins on system-wide (reloaded through the API), another
    domain with a user, a system token and a token of a domain administrator."""
    server = api_server
    admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
    admin_cli(server, "admin", "grant", f"bob@{DOMAIN}", "--domain", DOMAIN)
    system = admin_cli(server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "s")
    domain = admin_cli(server, "admin", "token", "create", f"bob@{DOMAIN}", "--name", "d")
    client = ApiClient(server)
    system, domain = system.strip(), domain.strip()
    assert client.call("POST", "/api/v1/domains", system, {"name": OTHER}).status == 201
    made = client.call(
        "POST", "/api/v1/users", system, {"address": f"carol@{OTHER}", "password": "carolsecret1"}
    )
    assert made.status == 201, made.raw
    for plugin in ("access", "rules"):  # one at a time: each switch starts from the running list
        switched = client.call(
            "PUT", f"/api/v1/plugins/{plugin}/enabled", system, {"enabled": True}
        )
        assert switched.status == 200, switched.raw
        reloaded = client.call("POST", "/api/v1/reload", system).body
        assert plugin in reloaded["plugins"], reloaded
    return {"client": client, "system": system, "domain": domain, "server": server}


def greeting(server, source: str) -> bytes:
    """The first line the SMTP listener sends a client connecting from ``source``."""
    with socket.create_connection(
        ("127.0.0.1", server.smtp_port), timeout=10, source_address=(source, 0)
    ) as sock:
        return sock.makefile("rb").readline()


def test_access_rules_through_the_api(setup):
    """M1: a banned rule added through the API refuses the client at the greeting; move and
    delete work; only a system administrator may touch the lists; the audit log has it."""
    client, system, domain, server = (setup[k] for k in ("client", "system", "domain", "server"))
    added = client.call(
        "POST",
        "/api/v1/access-rules",
        system,
        {"pattern": "127.0.3.1-9", "kind": "banned", "comment": "noisy"},
    )
    assert added.status == 201, added.raw
    assert (added.body["where"], added.body["position"], added.body["added"]) == ("system", 1, True)
    wait_for(lambda: greeting(server, "127.0.3.5").startswith(b"554 "), what="the ban to hold")
    assert greeting(server, "127.0.4.5").startswith(b"220 ")

    second = client.call(
        "POST", "/api/v1/access-rules", system, {"pattern": "127.0.3.*", "kind": "permitted"}
    )
    assert second.body["position"] == 2
    moved = client.call(
        "PATCH", "/api/v1/access-rules", system, {"pattern": "127.0.3.*", "position": 1}
    )
    assert (moved.status, moved.body["position"]) == (200, 1)
    listed = client.call("GET", "/api/v1/access-rules?system=true", system).body
    assert [(r["position"], r["pattern"]) for r in listed if r["where"] == "system"] == [
        (1, "127.0.3.*"),
        (2, "127.0.3.1-9"),
    ]
    wait_for(lambda: greeting(server, "127.0.3.5").startswith(b"220 "), what="the permit")

    bad = client.call(
        "POST", "/api/v1/access-rules", system, {"pattern": "300.1.1.1", "kind": "banned"}
    )
    assert bad.status == 422 and "300.1.1.1" in bad.body["error"]["message"]
    flag = client.call(
        "POST",
        "/api/v1/access-rules",
        system,
        {"pattern": "127.0.5.1", "kind": "custom", "flags": ["fly"]},
    )
    assert flag.status == 422 and "fly" in flag.body["error"]["message"]
    nowhere = client.call(
        "POST",
        "/api/v1/access-rules",
        system,
        {"pattern": "127.0.5.1", "kind": "banned", "listener": "10.9.9.9"},
    )
    assert nowhere.status == 422 and "no listener on 10.9.9.9" in nowhere.body["error"]["message"]

    for method, path, body in (
        ("GET", "/api/v1/access-rules", None),
        ("POST", "/api/v1/access-rules", {"pattern": "127.0.6.1", "kind": "banned"}),
        ("PATCH", "/api/v1/access-rules", {"pattern": "127.0.3.*", "position": 2}),
        ("DELETE", "/api/v1/access-rules?pattern=127.0.3.*", None),
    ):
        refused = client.call(method, path, domain, body)
        assert refused.status == 403, (method, refused.raw)
        assert "system administrator" in refused.body["error"]["message"]
    assert client.call("GET", "/api/v1/access-rules", None).status == 401

    for pattern in ("127.0.3.*", "127.0.3.1-9"):
        gone = client.call("DELETE", f"/api/v1/access-rules?pattern={pattern}", system)
        assert gone.status == 200, gone.raw
    again = client.call("DELETE", "/api/v1/access-rules?pattern=127.0.3.*", system)
    assert again.status == 404 and "no rule for 127.0.3.*" in again.body["error"]["message"]
    audit = admin_cli(server, "admin", "audit", "--json")
    assert "access.add" in audit and "access.move" in audit and "access.delete" in audit


def _folder_has(server, folder: str, subject: bytes) -> bool:
    imap = imaplib.IMAP4("localhost", server.ports["imap"])
    try:
        imap.starttls(ssl.create_default_context(cafile=str(server.cert_path)))
        imap.login(ALICE, USERS["alice"])
        if imap.select(f'"{folder}"', readonly=True)[0] != "OK":
            return False
        return bool(imap.search(None, "SUBJECT", f'"{subject.decode()}"')[1][0])
    finally:
        imap.logout()


def test_rules_through_the_api(setup):
    """M1, M3: a domain administrator adds a rule for a user of their domain through the API
    and mail to that user is filed by it; the dry run says so without storing anything;
    edit, disable, move and delete; another domain's and the system's lists are refused
    with the same words whether they exist or not."""
    client, system, domain, server = (setup[k] for k in ("client", "system", "domain", "server"))
    rule = {
        "user": ALICE,
        "name": "invoices",
        "conditions": ["header Subject contains invoice"],
        "actions": ["folder Invoices"],
    }
    added = client.call("POST", "/api/v1/rules", domain, rule)
    assert added.status == 201, added.raw
    assert (added.body["where"], added.body["state"]) == (f"user {ALICE}", "enabled")

    tried = client.call(
        "POST", "/api/v1/rules/test", domain, {"user": ALICE, "message": INVOICE.decode()}
    )
    assert tried.status == 200, tried.raw
    assert (tried.body["matched"], tried.body["folder"]) == (
        [f"user {ALICE}: invoices"],
        "Invoices",
    )
    assert "store in: Invoices" in tried.body["lines"]

    def delivered() -> bool:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.sendmail("shop@vendor.example", [ALICE], INVOICE)
        return _folder_has(server, "Invoices", b"your invoice 42")

    wait_for(delivered, what="the rule to file the mail")

    assert (
        client.call(
            "POST", "/api/v1/rules", domain, {**rule, "name": "second", "conditions": ["any"]}
        ).status
        == 201
    )
    changed = client.call(
        "PATCH",
        "/api/v1/rules",
        domain,
        {
            "user": ALICE,
            "name": "second",
            "new_name": "catch",
            "actions": ["folder Other"],
            "enabled": False,
            "position": 1,
        },
    )
    assert changed.status == 200, changed.raw
    assert (
        changed.body["name"],
        changed.body["state"],
        changed.body["position"],
        changed.body["actions"],
    ) == ("catch", "disabled", 1, ["folder Other"])
    one = client.call("GET", f"/api/v1/rules?user={ALICE}&name=catch", domain).body
    assert [r["summary"] for r in one] == ["any -> folder Other"]
    mine = client.call("GET", "/api/v1/rules", domain).body
    assert [(r["position"], r["name"]) for r in mine] == [(1, "catch"), (2, "invoices")]

    bad = client.call(
        "POST", "/api/v1/rules", domain, {**rule, "name": "x", "conditions": ["sizes > 5"]}
    )
    assert bad.status == 422 and "nothing was changed" in bad.body["error"]["message"]
    for target in (f"carol@{OTHER}", f"nobody@{OTHER}"):
        refused = client.call("POST", "/api/v1/rules", domain, {**rule, "user": target})
        assert refused.status == 403
        assert refused.body["error"]["message"] == f"you do not administer the domain {OTHER}"
    for path in (f"/api/v1/rules?domain={OTHER}", "/api/v1/rules?system=true"):
        assert client.call("GET", path, domain).status == 403
    test_other = client.call(
        "POST",
        "/api/v1/rules/test",
        domain,
        {"user": f"carol@{OTHER}", "message": INVOICE.decode()},
    )
    assert test_other.status == 403

    sys_rule = {"system": True, "name": "tag", "conditions": ["any"], "actions": ["note hi"]}
    assert client.call("POST", "/api/v1/rules", domain, sys_rule).status == 403
    assert client.call("POST", "/api/v1/rules", system, sys_rule).status == 201
    assert "tag" not in [r["name"] for r in client.call("GET", "/api/v1/rules", domain).body]
    assert "tag" in [r["name"] for r in client.call("GET", "/api/v1/rules", system).body]

    for name in ("catch", "invoices"):
        gone = client.call("DELETE", f"/api/v1/rules?user={ALICE}&name={name}", domain)
        assert gone.status == 200, gone.raw
    assert client.call("DELETE", "/api/v1/rules?system=true&name=tag", system).status == 200
    missing = client.call("DELETE", f"/api/v1/rules?user={ALICE}&name=catch", domain)
    assert missing.status == 404 and "has no rule 'catch'" in missing.body["error"]["message"]
    audit = admin_cli(server, "admin", "audit", "--json")
    assert all(
        a in audit for a in ("rule.add", "rule.edit", "rule.disable", "rule.move", "rule.delete")
    )
