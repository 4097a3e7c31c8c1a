"""An administrator whose password is kept in LDAP: a password changed in slapd itself ends
their admin sessions, on the API and in the web admin, after the check interval."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from argon2 import PasswordHasher
from twisted.internet import task

from mailmax.core.directory.admins import AdminStore
from mailmax.core.directory.mixed import Directory, build_ldap_sources
from mailmax.core.ldapsettings import LDAPSourceSettings
from tests.api_support import ApiClient, admin_cli, start_api_server
from tests.fixtures.server import MailMaxServer
from tests.fixtures.slapd import BASE_DN, LDAP_DOMAIN, PEOPLE_DN, Slapd

LOGIN = "harry"
HARRY = f"{LOGIN}@{LDAP_DOMAIN}"
HARRY_DN = f"uid={LOGIN},{PEOPLE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"


def _slapd_admin(slapd: Slapd) -> ldap3.Connection:
    """A connection bound as slapd's root: what an LDAP administrator changes things with."""
    server = ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE)
    return ldap3.Connection(server, ROOT_DN, "adminsecret", auto_bind=True)


def _set_password(slapd: Slapd, password: str) -> None:
    connection = _slapd_admin(slapd)
    try:
        assert connection.modify(HARRY_DN, {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]})
    finally:
        connection.unbind()


@pytest.fixture(scope="module")
def harry(slapd_server: Slapd) -> Iterator[str]:
    """An LDAP user of this module's own (the shared slapd's seeded users stay as they are)."""
    connection = _slapd_admin(slapd_server)
    try:
        attributes = {"uid": LOGIN, "cn": "Harry Example", "sn": "Example", "mail": HARRY,
                      "userPassword": "harry first secret"}  # fmt: skip
        assert connection.add(HARRY_DN, "inetOrgPerson", attributes), connection.result
        yield HARRY
    finally:
        connection.delete(HARRY_DN)
        connection.unbind()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, slapd_server: Slapd, harry: str
) -> Iterator[MailMaxServer]:
    """The admin API with ldap.test from slapd; harry is a system administrator; sessions ask
    LDAP on every request."""
    data_dir = tmp_path_factory.mktemp("ldap-admin") / "data"
    mail = start_api_server(
        data_dir,
        admin={"ldap_password_check_seconds": 0},
        auth={"failure_delay": 0.0, "max_failure_delay": 0.0},
        **{"ldap.corp": slapd_server.source()},
    )
    try:
        admin_cli(mail, "domain", "add", LDAP_DOMAIN, "--user-source", "ldap:corp")
        admin_cli(mail, "ldap", "test", harry)  # makes harry's record, which rights hang on
        admin_cli(mail, "admin", "grant", harry, "--system")
        yield mail
    finally:
        try:
            mail.stop(timeout=15)
        except Exception:
            mail.kill()


def _login(client: ApiClient, password: str) -> str:
    answer = client.call("POST", "/api/v1/login", body={"username": HARRY, "password": password})
    assert answer.status == 200, answer.body
    return answer.body["token"]


def test_a_password_changed_in_ldap_ends_api_and_web_sessions(
    server: MailMaxServer, slapd_server: Slapd
) -> None:
    """S5: both sessions work until slapd gets a new password; the next request is refused
    (401 on the API, back to the sign-in page on the web admin); the new password signs in."""
    client = ApiClient(server)
    api_token = _login(client, "harry first secret")
    web_token = _login(client, "harry first secret")
    cookie = {"Cookie": f"mailmax_admin={web_token}"}
    assert client.call("GET", "/api/v1/whoami", api_token).body["address"] == HARRY
    assert b"Dashboard</h1>" in client.call("GET", "/admin/", headers=cookie).raw
    try:
        _set_password(slapd_server, "harry second secret")
        refused = client.call("GET", "/api/v1/whoami", api_token)
        assert refused.status == 401
        assert "not valid" in refused.body["error"]["message"]
        web = client.call("GET", "/admin/", headers=cookie)  # redirected to the sign-in page
        assert b"Dashboard</h1>" not in web.raw and b'name="password"' in web.raw
        fresh = _login(client, "harry second secret")
        assert client.call("GET", "/api/v1/whoami", fresh).body["address"] == HARRY
    finally:
        _set_password(slapd_server, "harry first secret")


def test_ldap_is_asked_at_most_once_per_interval(
    tmp_path: Path, slapd_server: Slapd, harry: str
) -> None:
    """S5: within the check interval a session does not ask LDAP; after it, a changed
    password ends the session. Sessions of SQL administrators carry no LDAP fingerprint."""
    directory = Directory.open(
        f"sqlite:///{tmp_path / 'd.db'}",
        base_dir=tmp_path,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
    )
    directory.ldap_sources = build_ldap_sources(
        {"corp": LDAPSourceSettings(**slapd_server.source())}
    )
    try:
        directory.add_domain(LDAP_DOMAIN, str(tmp_path / "l"), user_source="ldap:corp")
        directory.add_domain("example.test", str(tmp_path / "e"))
        directory.add_user("root@example.test", "root long secret")
        assert directory.authenticate(harry, "harry first secret") is not None
        clock = task.Clock()
        clock.advance(1000)
        store = AdminStore(directory, clock.seconds)
        store.grant(harry, system=True)
        store.grant("root@example.test", system=True)
        token, _ = store.create_session(harry, 3600, 10)
        root_token, _ = store.create_session("root@example.test", 3600, 10)
        assert directory.password_marker("root@example.test") is None
        try:
            _set_password(slapd_server, "harry second secret")
            clock.advance(59)
            assert store.session_admin(token, 3600, check_seconds=60) is not None
            clock.advance(1)
            assert store.session_admin(token, 3600, check_seconds=60) is None
            assert store.session_admin(token, 3600, check_seconds=60) is None  # ended for good
            assert store.session_admin(root_token, 3600, check_seconds=0) is not None
        finally:
            _set_password(slapd_server, "harry first secret")
    finally:
        directory.close()
