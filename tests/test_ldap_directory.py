"""The LDAP user source and the mixed directory against a real slapd (no MailMax server)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailmax.core.directory.api import Lookup
from mailmax.core.directory.errors import DirectoryError, DirectoryUnavailable
from mailmax.core.directory.ldapsource import LDAPUserSource
from mailmax.core.directory.mixed import ClearPasswordNotKept, Directory, build_ldap_sources
from mailmax.core.ldapsettings import LDAPSourceSettings
from tests.fixtures.slapd import LDAP_DOMAIN, Slapd


def _source(slapd: Slapd, **overrides: object) -> LDAPUserSource:
    return LDAPUserSource("corp", LDAPSourceSettings(**slapd.source(**overrides)))


#: Cheap argon2 parameters: the hashing is not what these tests are about.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
def directory(tmp_path: Path, slapd_server: Slapd) -> Iterator[Directory]:
    """A SQLite directory with example.test in SQL and ldap.test from the test slapd."""
    found = Directory.open(
        f"sqlite:///{tmp_path / 'd.db'}", base_dir=tmp_path, password_hasher=FAST_HASHER
    )
    found.ldap_sources = build_ldap_sources({"corp": LDAPSourceSettings(**slapd_server.source())})
    found.add_domain(LDAP_DOMAIN, str(tmp_path / "mail" / LDAP_DOMAIN), user_source="ldap:corp")
    found.add_domain("example.test", str(tmp_path / "mail" / "example.test"))
    try:
        yield found
    finally:
        found.close()


def test_filter_values_are_escaped(slapd_server: Slapd) -> None:
    """S5: an address or login full of filter syntax matches nothing instead of everything."""
    source = _source(slapd_server)
    assert source.find_by_address("*)(uid=*") == []
    assert source.find_by_address("*") == []
    assert source.find_by_login("*") == []
    assert [e.login for e in source.find_by_login("carol")] == ["carol"]


def test_bind_and_compare_check_passwords_and_refuse_empty_ones(slapd_server: Slapd) -> None:
    """S5: bind as the user (default) and compare with the hashed attribute both tell the
    right password from a wrong one; an empty password never binds (anonymous bind)."""
    for mode in ("bind", "compare"):
        source = _source(slapd_server, auth=mode)
        (entry,) = source.find_by_address(f"carol@{LDAP_DOMAIN}")
        assert source.check_password(entry, "carolsecret"), mode
        assert not source.check_password(entry, "wrong"), mode
        assert not source.check_password(entry, ""), mode


def test_failover_to_the_next_server_and_refused_service_account(slapd_server: Slapd) -> None:
    """S5: a server that refuses connections is passed over for the next one; a refused
    service account is a temporary failure that names the source, never "no such user"."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"ldap://127.0.0.1:{closed.getsockname()[1]}"
    source = _source(slapd_server, urls=[dead, slapd_server.url])
    assert len(source.find_by_address(f"carol@{LDAP_DOMAIN}")) == 1
    wrong = _source(slapd_server, bind_password="not-the-password")
    with pytest.raises(DirectoryUnavailable, match="corp"):
        wrong.find_by_address(f"carol@{LDAP_DOMAIN}")


def test_a_server_that_never_answers_times_out(slapd_server: Slapd) -> None:
    """S5: a server that takes the connection and never answers costs about the timeout,
    once: until the timeout has passed again, calls fail without waiting."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        source = _source(slapd_server, urls=[url], timeout=1.0)
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            source.find_by_address(f"carol@{LDAP_DOMAIN}")
        assert time.monotonic() - started < 5
        # the next calls within the timeout fail at once instead of holding a thread again
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable, match="trying again in"):
            source.find_by_address(f"carol@{LDAP_DOMAIN}")
        assert time.monotonic() - started < 0.5


def test_lookups_map_ldap_entries_to_users(directory: Directory) -> None:
    """S5: users, second addresses, disabled accounts and unknown names of an LDAP domain;
    quota and home node come from the mapped attributes."""
    carol = directory.lookup_recipient(f"C.Smith@{LDAP_DOMAIN}")
    assert carol.status is Lookup.USER and carol.mailbox == f"carol@{LDAP_DOMAIN}"
    assert directory.lookup_recipient(f"dave@{LDAP_DOMAIN}").status is Lookup.DISABLED
    assert directory.lookup_recipient(f"nobody@{LDAP_DOMAIN}").status is Lookup.UNKNOWN_USER
    erin = directory.get_user(f"erin@{LDAP_DOMAIN}")
    assert erin is not None and (erin.disk_limit_mb, erin.home_node) == (25, "node-b")


def test_logins_go_to_ldap_and_sql_users_stay_in_sql(directory: Directory) -> None:
    """S5: LDAP users log in with any of their login forms; APOP/CRAM-MD5 say why they
    cannot; SQL users of other domains are untouched; users cannot be added to an LDAP domain."""
    assert directory.authenticate("carol", "carolsecret", LDAP_DOMAIN).address == (
        f"carol@{LDAP_DOMAIN}"
    )
    assert directory.authenticate(f"c.smith@{LDAP_DOMAIN}", "carolsecret") is not None
    assert directory.authenticate(f"carol@{LDAP_DOMAIN}", "") is None
    assert directory.authenticate(f"dave@{LDAP_DOMAIN}", "davesecret") is None
    with pytest.raises(ClearPasswordNotKept, match="kept in LDAP"):
        directory.clear_password(f"carol@{LDAP_DOMAIN}")
    with pytest.raises(DirectoryError, match="come from ldap:corp"):
        directory.add_user(f"zed@{LDAP_DOMAIN}", "zedsecret1")
    directory.add_user("sam@example.test", "samsecret1")
    assert directory.authenticate("sam@example.test", "samsecret1") is not None


def test_a_domain_naming_an_unconfigured_source_fails_temporarily(directory: Directory) -> None:
    """S5: a domain whose LDAP source is not configured gives a temporary failure that says
    what to add, for mail and log-ins alike."""
    directory.edit_domain(LDAP_DOMAIN, user_source="ldap:gone")
    with pytest.raises(DirectoryUnavailable, match=r"\[ldap.gone\]"):
        directory.lookup_recipient(f"carol@{LDAP_DOMAIN}")
    with pytest.raises(DirectoryUnavailable):
        directory.authenticate(f"carol@{LDAP_DOMAIN}", "carolsecret")
    with pytest.raises(DirectoryError, match="sql or ldap:NAME"):
        directory.edit_domain(LDAP_DOMAIN, user_source="ldap:Bad Name")


def test_starttls_and_ldaps_verify_the_server_certificate(slapd_server: Slapd) -> None:
    """S5: StartTLS and LDAPS work with the server's CA; a certificate that cannot be
    verified is a temporary failure, never a fall-back to clear text."""
    ca = str(slapd_server.ca_file)
    for options in (
        {"urls": [slapd_server.starttls_url], "start_tls": True, "ca_file": ca},
        {"urls": [slapd_server.tls_url], "ca_file": ca},
    ):
        source = _source(slapd_server, **options)
        (entry,) = source.find_by_address(f"carol@{LDAP_DOMAIN}")
        assert source.check_password(entry, "carolsecret")
    for options in (
        {"urls": [slapd_server.starttls_url], "start_tls": True},
        {"urls": [slapd_server.tls_url]},
    ):
        with pytest.raises(DirectoryUnavailable):
            _source(slapd_server, **options).find_by_address(f"carol@{LDAP_DOMAIN}")
