"""The admin API over real HTTPS: tokens, log-in, access rules, errors, OpenAPI (M1, M3, A13)."""

from __future__ import annotations

import json
import re
import smtplib

import pytest

from tests.api_support import ApiClient, admin_cli, api_server  # noqa: F401  (the fixture)
from tests.fixtures.server import DOMAIN

OTHER = "other.test"


@pytest.fixture(scope="module")
def setup(api_server):  # noqa: F811
    """A second domain, a system admin (postmaster), a domain admin of example.test (alice),
    and a token for each."""
    server = api_server
    admin_cli(server, "domain", "add", OTHER)
    admin_cli(server, "user", "add", f"carol@{OTHER}", "--password", "carol long secret")
    admin_cli(server, "admin", "grant", f"postmaster@{DOMAIN}", "--system")
    admin_cli(server, "admin", "grant", f"alice@{DOMAIN}", "--domain", DOMAIN)
    system = admin_cli(server, "admin", "token", "create", f"postmaster@{DOMAIN}", "--name", "t")
    domain = admin_cli(server, "admin", "token", "create", f"alice@{DOMAIN}", "--name", "alice")
    return {
        "client": ApiClient(server),
        "system": system.strip(),
        "domain": domain.strip(),
        "server": server,
    }


def test_token_is_shown_once_and_stored_hashed(setup):
    """A13: `admin token create` prints the token; the database holds only a hash of it."""
    token = setup["system"]
    assert re.fullmatch(r"mmx_[0-9a-f]{12}_[\w-]{40,}", token)
    listed = admin_cli(setup["server"], "--json", "admin", "token", "list")
    assert token not in listed and token.split("_")[1] in listed
    database = (setup["server"].data_dir / "mailmax.db").read_bytes()
    assert token.encode() not in database


def test_no_token_and_bad_token_are_401(setup):
    """M3: without a valid token every route but log-in and the OpenAPI document is refused."""
    client = setup["client"]
    for token in (None, "mmx_000000000000_wrong", "mms_nosuchsession", "garbage"):
        answer = client.call("GET", "/api/v1/domains", token)
        assert answer.status == 401, token
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.body["error"]["status"] == 401
    assert client.call("GET", "/api/openapi.json").status == 200


def test_system_admin_sees_every_domain(setup):
    """M2: the domain list with a filter, sorting and pagination."""
    client, token = setup["client"], setup["system"]
    answer = client.call("GET", "/api/v1/domains", token)
    assert answer.status == 200
    assert [d["name"] for d in answer.body["items"]] == [DOMAIN, OTHER]
    assert answer.body["total"] == 2
    answer = client.call("GET", "/api/v1/domains?q=other", token)
    assert [d["name"] for d in answer.body["items"]] == [OTHER]
    answer = client.call("GET", "/api/v1/domains?desc=true&limit=1", token)
    assert [d["name"] for d in answer.body["items"]] == [OTHER]
    assert answer.body["total"] == 2
    answer = client.call("GET", "/api/v1/domains?sort=colour", token)
    assert answer.status == 422 and "cannot sort by 'colour'" in answer.body["error"]["message"]
    answer = client.call("GET", f"/api/v1/domains/{OTHER}", token)
    assert answer.status == 200 and answer.body["users"] == 1


def test_domain_admin_sees_only_their_domain(setup):
    """A13: a domain administrator lists and shows only their domain; another domain, existing
    or not, is the same 403."""
    client, token = setup["client"], setup["domain"]
    answer = client.call("GET", "/api/v1/domains", token)
    assert [d["name"] for d in answer.body["items"]] == [DOMAIN]
    assert client.call("GET", f"/api/v1/domains/{DOMAIN}", token).status == 200
    existing = client.call("GET", f"/api/v1/domains/{OTHER}", token)
    missing = client.call("GET", "/api/v1/domains/nowhere.test", token)
    assert existing.status == missing.status == 403
    assert existing.body["error"]["message"].replace(OTHER, "X") == missing.body["error"][
        "message"
    ].replace("nowhere.test", "X")
    refused = client.call("POST", "/api/v1/domains", token, {"name": "new.test"})
    assert refused.status == 403
    assert client.call("GET", "/api/v1/domains/new.test", setup["system"]).status == 404


def test_password_login_gives_a_session(setup):
    """M3: a password log-in returns a session token; log-out ends it; a wrong password and a
    user who is no administrator get the same 401."""
    client = setup["client"]
    answer = client.call(
        "POST", "/api/v1/login", body={"username": f"alice@{DOMAIN}", "password": "alicesecret"}
    )
    assert answer.status == 200, answer.raw
    session = answer.body["token"]
    assert answer.body["admin"] == {"address": f"alice@{DOMAIN}", "system": False,
                                    "domains": [DOMAIN]}  # fmt: skip
    assert client.call("GET", "/api/v1/whoami", session).body["address"] == f"alice@{DOMAIN}"
    assert client.call("POST", "/api/v1/logout", session).status == 204
    assert client.call("GET", "/api/v1/whoami", session).status == 401
    wrong = client.call(
        "POST", "/api/v1/login", body={"username": f"alice@{DOMAIN}", "password": "nope"}
    )
    not_admin = client.call(
        "POST", "/api/v1/login", body={"username": f"bob@{DOMAIN}", "password": "bobsecret"}
    )
    assert wrong.status == not_admin.status == 401
    assert wrong.body == not_admin.body


def test_failed_logins_are_throttled(setup):
    """M3: failed password log-ins count like mail log-ins: after [auth] block_after failures
    the address may not try that account (429), even with the right password."""
    client = setup["client"]
    wrong = {"username": f"alice@{DOMAIN}", "password": "wrong"}
    right = {**wrong, "password": "alicesecret"}
    statuses = [client.call("POST", "/api/v1/login", body=wrong).status for _ in range(3)]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    blocked = client.call("POST", "/api/v1/login", body=right)
    assert blocked.status == 429 and "too many failed logins" in blocked.body["error"]["message"]
    forgotten = client.call("DELETE", f"/api/v1/auth/blocked/alice@{DOMAIN}", setup["system"])
    assert forgotten.status == 200 and forgotten.body["records"] >= 1
    assert client.call("POST", "/api/v1/login", body=right).status == 200


def test_bad_requests_are_explained(setup):
    """Bad input gets a clear error: not JSON, a wrong field, an unknown path or method."""
    client, token = setup["client"], setup["system"]
    form = client.call("POST", "/api/v1/domains", token, data=b"name=x",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status == 415 and "application/json" in form.body["error"]["message"]
    broken = client.call("POST", "/api/v1/domains", token, data=b"{",
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert broken.status == 400
    field = client.call("POST", "/api/v1/domains", token, {"name": "x.test", "max_users": -1})
    assert field.status == 422 and "max_users" in field.body["error"]["message"]
    unknown = client.call("POST", "/api/v1/domains", token, {"name": "x.test", "colour": "red"})
    assert unknown.status == 422 and "colour" in unknown.body["error"]["message"]
    unusable = client.call("POST", "/api/v1/domains", token, {"name": "x.test", "home_node": "n"})
    assert unusable.status == 422
    assert "not a node of a cluster" in unusable.body["error"]["message"]
    assert client.call("GET", "/api/v1/nothing", token).status == 404
    assert client.call("PUT", "/api/v1/domains", token, {}).status == 405


def test_big_body_is_refused(setup):
    """A body over [admin] max_body_bytes is answered 413 without being kept."""
    client, token = setup["client"], setup["system"]
    answer = client.call("POST", "/api/v1/domains", token, data=b"x" * 2_000_000,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status == 413


def test_change_through_the_api_reaches_smtp_and_the_audit_log(setup):
    """M1: a domain alias added through the API takes mail at once; the change is audited
    with who, what and from where."""
    client, server = setup["client"], setup["server"]
    answer = client.call(
        "POST", f"/api/v1/domains/{DOMAIN}/aliases", setup["domain"], {"alias": "alias.test"}
    )
    assert answer.status == 201, answer.raw
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("x@example.org", ["bob@alias.test"], b"Subject: via alias\r\n\r\nhi\r\n")
    assert b"via alias" in server.wait_for_mail(f"bob@{DOMAIN}")[-1]
    audit = json.loads(admin_cli(server, "--json", "admin", "audit"))
    entry = next(e for e in audit if e["action"] == "domain.alias.add")
    assert entry["actor"] == f"alice@{DOMAIN}" and entry["origin"] == "127.0.0.1"
    assert entry["target"] == "alias.test" and entry["detail"] == {"domain": DOMAIN}
    removed = client.call("DELETE", "/api/v1/domain-aliases/alias.test", setup["domain"])
    assert removed.status == 204


def test_openapi_document_lists_every_route_and_validates(setup):
    """M1: /api/openapi.json is a valid OpenAPI 3.1 document naming every route served."""
    from openapi_spec_validator import validate

    from mailmax.core.api.app import collect_routes

    document = setup["client"].call("GET", "/api/openapi.json").body
    validate(document)
    assert document["openapi"].startswith("3.1")
    for route in collect_routes():
        assert route.method.lower() in document["paths"][route.path], route.path


def _sample_path(route) -> str:
    return re.sub(r"{(\w+)}", lambda m: f"x@{OTHER}" if m.group(1) == "address" else OTHER,
                  route.path)  # fmt: skip


def test_every_route_refuses_no_token_and_a_bad_token(setup):
    """M3: every route but the public ones answers 401 without a valid token."""
    from mailmax.core.api.app import collect_routes
    from mailmax.core.api.routing import Access

    client = setup["client"]
    for route in collect_routes():
        if route.access is Access.PUBLIC:
            continue
        for token in (None, "mmx_0123456789ab_notarealsecret"):
            answer = client.call(route.method, _sample_path(route), token)
            assert answer.status == 401, (route.method, route.path, token, answer.raw)


def test_every_system_route_refuses_a_domain_admin(setup):
    """A13: a domain administrator gets 403 from every system-only route, and from every
    route naming another domain."""
    from mailmax.core.api.app import collect_routes
    from mailmax.core.api.routing import Access, DomainAccess

    client, token = setup["client"], setup["domain"]
    for route in collect_routes():
        if route.access is Access.SYSTEM or isinstance(route.access, DomainAccess):
            answer = client.call(route.method, _sample_path(route), token, {})
            assert answer.status == 403, (route.method, route.path, answer.raw)


def test_sessions_outlive_a_restart_and_end_on_sign_out_or_a_new_password(setup):
    """M3: a session token is kept hashed in the directory, so it still works after the
    server restarts; signing out ends it, and so does a new password for the administrator."""
    client, server, system = setup["client"], setup["server"], setup["system"]
    login = {"username": f"alice@{DOMAIN}", "password": "alicesecret"}
    first = client.call("POST", "/api/v1/login", body=login).body["token"]
    second = client.call("POST", "/api/v1/login", body=login).body["token"]
    assert re.fullmatch(r"mms_[\w-]{40,}", first)
    server.restart()
    client = ApiClient(server)  # the admin listener's new port
    setup["client"] = client
    database = (server.data_dir / "mailmax.db").read_bytes()
    assert first.encode() not in database and second.encode() not in database
    assert client.call("GET", "/api/v1/whoami", first).body["address"] == f"alice@{DOMAIN}"
    assert client.call("POST", "/api/v1/logout", first).status == 204
    assert client.call("GET", "/api/v1/whoami", first).status == 401
    assert client.call("GET", "/api/v1/whoami", second).status == 200
    changed = client.call("PUT", f"/api/v1/users/alice@{DOMAIN}/password", system,
                          {"password": "alice new secret"})  # fmt: skip
    assert changed.status == 204, changed.raw
    assert client.call("GET", "/api/v1/whoami", second).status == 401
    again = client.call("POST", "/api/v1/login",
                        body={**login, "password": "alice new secret"})  # fmt: skip
    assert client.call("GET", "/api/v1/whoami", again.body["token"]).status == 200
    admin_cli(server, "user", "passwd", f"alice@{DOMAIN}", "--password", "alicesecret")
    assert client.call("GET", "/api/v1/whoami", again.body["token"]).status == 401
