"""The web admin's pages for housekeeping, virus scanning per user, the directory's LDAP test and
autoreplies, in headless Chromium against one running server: what each page shows matches the
command line's words, and a domain administrator is kept to their domain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api_support import admin_cli, start_api_server
from tests.fixtures.server import DOMAIN, MailMaxServer
from tests.fixtures.webadmin import (
    CAROL,
    CAROL_PASSWORD,
    OTHER,
    ROOT,
    ROOT_PASSWORD,
    Admin,
    add_two_admins,
    sign_in_as,
    signed_in,
)
from tests.fixtures.webadmin import browser as browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailMaxServer]:
    """One server: a system administrator, carol administering other.test, and housekeeping
    on for the test domain."""
    mail = start_api_server(tmp_path_factory.mktemp("webmaint") / "data")
    add_two_admins(mail)
    admin_cli(mail, "plugin", "enable", "housekeeping", "--domain", DOMAIN)
    admin_cli(mail, "plugin", "enable", "autoreply", "--domain", DOMAIN)
    admin_cli(mail, "plugin", "set", "housekeeping", "inactive_days=30", "--domain", DOMAIN)
    yield mail
    try:
        mail.stop(timeout=15)
    except Exception:
        mail.kill()


@pytest.fixture(scope="module")
def admin(browser, server: MailMaxServer) -> Admin:
    """The browser on the module's server, signed in as the system administrator."""
    return signed_in(browser, server)


def test_housekeeping_page(admin: Admin) -> None:
    """S6: the dry run and the run show the command line's report lines."""
    admin.open("/admin/housekeeping")
    assert admin.heading() == "Housekeeping"
    admin.click("main button[value=dry-run]")
    assert admin.text("#h-report") == "Dry run"
    assert "1 domain(s): 0 folder(s) to clean, 0 idle user(s)" in admin.text("#housekeeping-report")
    admin.fill({"f-domain": DOMAIN})
    admin.click("main button[value=run]")
    assert admin.text("#h-report") == "Done"
    assert "1 domain(s): 0 folder(s) cleaned" in admin.text("#housekeeping-report")
    admin.fill({"f-domain": "no.test"})
    admin.click("main button[value=dry-run]")
    assert "not served here" in admin.text("main")


def test_housekeeping_page_for_a_domain_administrator(browser, server: MailMaxServer) -> None:
    """S6: a domain administrator runs it for their domain, and is refused every domain."""
    carol = Admin(browser, server)
    sign_in_as(carol, CAROL, CAROL_PASSWORD)
    try:
        carol.open("/admin/housekeeping")
        carol.fill({"f-domain": OTHER})
        carol.click("main button[value=dry-run]")
        assert "housekeeping is off for every domain" in carol.text("#housekeeping-report")
        carol.open("/admin/housekeeping")
        carol.click("main button[value=dry-run]")
        assert "name one domain" in carol.text("main")
    finally:
        sign_in_as(carol, ROOT, ROOT_PASSWORD)


def test_antivirus_users_on_the_antivirus_page(admin: Admin) -> None:
    """AV5: the antivirus page switches scanning for every user of a domain."""
    admin.open("/admin/antivirus")
    assert admin.heading() == "Antivirus", admin.text("main")
    assert "plugin antivirus is not loaded in the running server" in admin.text("dl.status")
    admin.fill({"av-domain": OTHER})
    admin.click("main button[value=off]")
    assert admin.text(".flash") == f"antivirus switched off for 1 users of {OTHER}"


def test_ldap_test_page(admin: Admin) -> None:
    """S5: the LDAP test page gives the command line's refusal for a SQL domain's address."""
    admin.open("/admin/ldap-test")
    assert admin.heading() == "LDAP test"
    admin.fill({"f-address": f"alice@{DOMAIN}"})
    admin.submit()
    assert f"the users of {DOMAIN} are kept in SQL, not LDAP" in admin.text("main")


def test_autoreply_form_on_the_user_page(admin: Admin) -> None:
    """R4: the user page switches the auto-responder on with a text, shows it, and off."""
    alice = f"alice@{DOMAIN}"
    admin.open(f"/admin/users/{alice}")
    assert admin.text("#autoreply-state") == "Off."
    admin.fill({"f-subject": "Away", "f-text": "Back on Monday."})
    admin.submit("form[action$='/autoreply']")
    assert admin.text(".flash") == f"{alice}: auto-responder on"
    assert admin.text("#autoreply-state") == "On: mail to this user is answered."
    admin.submit("form[action$='/autoreply-off']")
    assert admin.text(".flash") == f"{alice}: auto-responder off"
    assert admin.text("#autoreply-state") == "Off."
    assert not admin.driver.find_elements("css selector", "form[action$='/move']")
    shown = admin.text("main")  # no cluster: nothing about moving the mailbox
    assert "Cluster node" not in shown and "Move the mailbox" not in shown
    admin.open(f"/admin/users/carol@{OTHER}")
    admin.submit("form[action$='/autoreply']")
    assert "a reply needs something to say" in admin.text("main")
    assert admin.text("#autoreply-state") == "Off."


def test_autoreply_from_address_and_real_name(admin: Admin, server: MailMaxServer) -> None:
    """R4: the from address and the real name of the replies, with the command line's
    validation message next to the field; a refused form changes nothing."""
    bob = f"bob@{DOMAIN}"
    admin.open(f"/admin/users/{bob}")
    assert admin.driver.find_element("css selector", "label[for=f-from_address]").text == (
        "From address"
    )
    assert admin.driver.find_element("css selector", "label[for=f-real_name]").text == "Real name"
    admin.fill({"f-text": "Away.", "f-from_address": "away at example", "f-real_name": "Bob"})
    admin.submit("form[action$='/autoreply']")
    assert "the from address 'away at example' is not an address like name@example.com" in (
        admin.text("#f-from_address-error")
    )
    assert admin.text("#autoreply-state") == "Off."
    admin.fill({"f-from_address": f"away@{DOMAIN}"})
    admin.submit("form[action$='/autoreply']")
    assert admin.text(".flash") == f"{bob}: auto-responder on"
    assert admin.driver.find_element("id", "f-from_address").get_attribute("value") == (
        f"away@{DOMAIN}"
    )
    assert admin.driver.find_element("id", "f-real_name").get_attribute("value") == "Bob"
    shown = admin_cli(server, "autoreply", "show", bob)
    assert f"away@{DOMAIN}" in shown and "Bob" in shown
    admin.submit("form[action$='/autoreply-off']")
