"""The web admin in headless Chromium against a running server: sign in, domains and users
with validation next to the field, mail to a new user seen over IMAP, a plugin switched on for
a domain, the queue, and a domain administrator kept to their domain."""

from __future__ import annotations

import http.client
import imaplib
import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api_support import ApiClient, admin_cli, start_api_server, wait_for
from tests.fixtures.server import DOMAIN, MailMaxServer
from tests.fixtures.webadmin import PHONE, ROOT, ROOT_PASSWORD, Admin, sign_in_as
from tests.fixtures.webadmin import browser as browser

NEW_DOMAIN = "web.test"
HELD_DOMAIN = "held.test"
DOMAIN_ADMIN = f"bob@{DOMAIN}"
DOMAIN_ADMIN_PASSWORD = "bobsecret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailMaxServer]:
    """One server for the module, with a system and a domain administrator and an ETRN
    domain whose mail waits in the queue."""
    mail = start_api_server(tmp_path_factory.mktemp("web") / "data", auth={"failure_delay": 0.1})
    admin_cli(mail, "admin", "grant", ROOT, "--system")
    admin_cli(mail, "domain", "add", HELD_DOMAIN, "--type", "etrn")
    yield mail
    try:
        mail.stop(timeout=15)
    except Exception:
        mail.kill()


@pytest.fixture(scope="module")
def admin(browser: webdriver.Chrome, server: MailMaxServer) -> Admin:
    """The browser, on the module's server."""
    return Admin(browser, server)


def test_sign_in_refuses_a_bad_password_then_shows_the_dashboard(admin, server):
    """M1: a wrong password stays on the form with the API's refusal; the right one leads to
    the dashboard with the services and the queue."""
    admin.open("/admin/domains")
    assert admin.heading() == "Sign in"
    admin.shot("signin", PHONE)
    admin.fill({"username": ROOT, "password": "wrong"})
    admin.submit()
    assert admin.heading() == "Sign in"
    assert "password" in admin.text("#signin-error").lower()
    admin.fill({"username": ROOT, "password": ROOT_PASSWORD})
    admin.submit()
    assert admin.heading() == "Domains"  # back where the browser wanted to go
    cookie = admin.driver.get_cookie("mailmax_admin")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    admin.open("/admin/")
    assert "smtp" in admin.text("main") and "Queue" in admin.text("main")


def test_domain_form_shows_the_cli_message_next_to_the_field(admin, server):
    """A bad domain name is refused with the CLI's words next to the name field; a good one
    is added and shown."""
    admin.open("/admin/domains/new")
    admin.fill({"f-name": NEW_DOMAIN, "f-max_users": "-3"})
    admin.submit()
    assert "greater than or equal to 0" in admin.text("#f-max_users-error")
    admin.fill({"f-name": "bad name.test", "f-max_users": "10"})
    admin.submit()
    assert "contains spaces or control characters" in admin.text("#f-name-error")
    cli_error = admin_cli(server, "domain", "add", "bad name.test", code=1)
    assert "contains spaces or control characters" in cli_error
    admin.shot("domain-invalid")
    admin.fill({"f-name": NEW_DOMAIN, "f-max_users": "10", "f-catch_all": ""})
    admin.submit()
    assert admin.heading() == f"Domain {NEW_DOMAIN}"
    assert f"domain {NEW_DOMAIN} added" in admin.text(".flash")
    admin.open("/admin/domains?q=web&sort=name")
    assert NEW_DOMAIN in admin.text("tbody") and DOMAIN not in admin.text("tbody")
    admin.open("/admin/domains")
    admin.shot("domains")


def test_user_made_in_the_browser_receives_mail(admin, server):
    """A user added through the form logs in over IMAP and finds the mail sent to them."""
    address = f"carol@{NEW_DOMAIN}"
    admin.open(f"/admin/users/new?domain={NEW_DOMAIN}")
    admin.fill({"f-address": "carol@nosuch.test", "f-password": "carol long secret"})
    admin.submit()
    assert "nosuch.test" in admin.text("#f-address-error")
    admin.fill({"f-address": address, "f-password": "carol long secret",
                "f-first_name": "Carol"})  # fmt: skip
    admin.submit()
    assert admin.heading() == f"User {address}"
    admin.shot("user")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("sender@remote.test", [address],
                      b"Subject: hello from the web\r\n\r\nWelcome.\r\n")  # fmt: skip
    server.wait_for_mail(address)
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"]) as imap:
        imap.starttls(server.ssl_context())
        imap.login(address, "carol long secret")
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", '"hello from the web"')
        assert found[0].split()
    admin.open(f"/admin/users/{address}")
    admin.fill({"f-password": "carol new secret"})
    admin.submit("section[aria-labelledby=h-password] form")
    assert f"{address}: password set" in admin.text(".flash")
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"]) as imap:
        imap.starttls(server.ssl_context())
        assert imap.login(address, "carol new secret")[0] == "OK"
    admin.open(f"/admin/users?domain={NEW_DOMAIN}")
    assert address in admin.text("tbody")
    admin.shot("users")
    admin.shot("users-phone", PHONE)


def test_plugin_switched_on_for_the_domain(admin, server):
    """The plugin page has a form made from the plugin's settings model, refusing a bad value
    next to its field; switching the plugin on for a domain is what `mailmax plugin show` then
    says, and a reload from the browser shows its result."""
    admin.open("/admin/plugins")
    assert admin.heading() == "Plugins" and "etrn" in admin.text("tbody")
    admin.shot("plugins")
    admin.open(f"/admin/plugins/etrn?domain={HELD_DOMAIN}")
    assert "Off" in admin.text("#plugin-state")
    admin.submit("form.inline")
    assert f"etrn enabled for domain {HELD_DOMAIN}" in admin.text(".flash")
    assert admin.text("#plugin-state").startswith(f"On for domain {HELD_DOMAIN}")
    shown = admin_cli(server, "plugin", "show", "etrn", "--domain", HELD_DOMAIN, "--json")
    assert '"enabled": true' in shown
    admin.fill({"s-port": "99999"})
    admin.submit("form.narrow")
    assert "65535" in admin.text("#s-port-error")
    admin.fill({"s-port": "2525"})
    admin.submit("form.narrow")
    assert f"etrn settings changed for domain {HELD_DOMAIN}" in admin.text(".flash")
    assert admin.driver.find_element(By.ID, "s-port").get_attribute("value") == "2525"
    admin.shot("plugin")
    admin.open("/admin/plugins")
    admin.submit("form.inline")
    assert "reloaded: plugins" in admin.text(".flash") and "etrn" in admin.text(".flash")


def test_queue_shows_held_mail_and_returns_it_after_confirmation(admin, server):
    """Mail for an ETRN domain waits in the queue with its state and next try; returning it
    to the sender asks for a confirmation first."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("sender@remote.test", [f"someone@{HELD_DOMAIN}"],
                      b"Subject: held\r\n\r\nwaiting\r\n")  # fmt: skip
    admin.open("/admin/queue?state=held")

    def held(driver: webdriver.Chrome) -> bool:
        driver.refresh()
        return "held for ETRN" in admin.text("tbody")

    WebDriverWait(admin.driver, 15, poll_frequency=0.3).until(held)
    assert f"someone@{HELD_DOMAIN}" in admin.text("tbody")
    admin.shot("queue")
    admin.open("/admin/")
    assert "held for ETRN" in admin.text("#h-queue + p + table")
    admin.shot("dashboard")
    admin.open("/admin/queue")
    admin.driver.find_element(By.CSS_SELECTOR, "tbody input[type=checkbox]").click()
    admin.click("button[value=bounce]")
    assert admin.heading() == "Return to sender: 1 message"
    admin.click("button[value=bounce]")
    assert "1 message returned to the sender" in admin.text(".flash")


def test_aliases_domain_aliases_and_deleting_with_a_confirmation(admin, server):
    """A user alias and a domain alias made in the browser deliver mail; deleting asks for the
    name to be typed, and a wrong one deletes nothing."""
    admin.open("/admin/aliases/new")
    admin.fill({"f-address": f"info@{NEW_DOMAIN}", "f-targets": f"carol@{NEW_DOMAIN}"})
    admin.submit()
    assert f"alias info@{NEW_DOMAIN} added" in admin.text(".flash")
    admin.open("/admin/domain-aliases")
    admin.fill({"f-domain": NEW_DOMAIN, "f-alias": "web.example"})
    admin.submit()
    assert f"web.example now leads to {NEW_DOMAIN}" in admin.text(".flash")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail(
            "sender@remote.test", ["info@web.example"], b"Subject: via aliases\r\n\r\nx\r\n"
        )
    assert b"via aliases" in server.wait_for_mail(f"carol@{NEW_DOMAIN}", count=2)[-1]
    admin.open(f"/admin/aliases/info@{NEW_DOMAIN}/delete")
    admin.fill({"confirm": "info"})
    admin.submit()
    assert "nothing was deleted" in admin.text("#confirm-error")
    admin.fill({"confirm": f"info@{NEW_DOMAIN}"})
    admin.submit()
    assert f"alias info@{NEW_DOMAIN} deleted" in admin.text(".flash")
    assert "No alias matches." in admin.text("tbody")


def test_bans_added_and_lifted(admin, server):
    """A ban with a bad expiry is refused next to that field; a good one is listed, as
    `mailmax ban list` shows it, and lifted."""
    admin.open("/admin/bans")
    admin.fill({"f-pattern": "spammer@bad.test", "f-expires": "soon"})
    admin.submit()
    assert "neither a duration" in admin.text("#f-expires-error")
    admin.fill({"f-expires": "7d", "f-reason": "sends junk"})
    admin.submit()
    assert "spammer@bad.test banned" in admin.text(".flash")
    assert "spammer@bad.test" in admin.text("tbody")
    assert "spammer@bad.test" in admin_cli(server, "ban", "list")
    admin.shot("bans")
    admin.submit("tbody form.inline")
    assert "ban on spammer@bad.test lifted" in admin.text(".flash")
    assert "No ban." in admin.text("tbody")


def test_api_token_made_in_the_browser_works_until_revoked(admin, server):
    """A token made on the tokens page is shown once, answers the API, and stops working
    when revoked there."""
    admin.open("/admin/tokens")
    admin.fill({"f-name": "monitoring", "f-days": "0"})
    admin.submit("main form.narrow")
    assert "greater than 0" in admin.text("#f-days-error")
    admin.fill({"f-days": "30"})
    admin.submit("main form.narrow")
    token = admin.driver.find_element(By.ID, "new-token").get_attribute("value")
    client = ApiClient(server)
    assert client.call("GET", "/api/v1/whoami", token).body["address"] == ROOT
    admin.open("/admin/tokens")
    admin.submit("tbody form.inline")
    assert "revoked" in admin.text(".flash")
    assert client.call("GET", "/api/v1/whoami", token).status == 401


def test_a_form_without_the_csrf_token_changes_nothing(admin, server):
    """A POST whose CSRF token is not the session's is refused with a 403 page; an unknown
    page is a 404 page."""
    admin.open(f"/admin/domains/{NEW_DOMAIN}")
    admin.driver.execute_script("document.querySelector('main input[name=csrf]').value = 'forged'")
    admin.fill({"f-max_users": "99"})
    admin.submit()
    assert admin.heading() == "Not allowed"
    assert "99" not in admin_cli(server, "domain", "show", NEW_DOMAIN)
    admin.open("/admin/no-such-page")
    assert admin.heading() == "Not found"


def test_domain_admin_sees_only_their_domain(admin, server):
    """A13: a domain administrator granted in the browser lists only their domain; another
    domain, existing or not, and its users get the same 403 page."""
    admin.open("/admin/admins")
    admin.fill({"f-address": DOMAIN_ADMIN, "f-domains": DOMAIN})
    admin.submit()
    assert f"{DOMAIN_ADMIN} is now an administrator" in admin.text(".flash")
    assert f"domains: {DOMAIN}" in admin.text("tbody")
    admin.sign_out()
    assert admin.heading() == "Sign in"
    admin.sign_in(DOMAIN_ADMIN, DOMAIN_ADMIN_PASSWORD)
    assert admin.heading() == "Dashboard"
    admin.open("/admin/domains")
    assert DOMAIN in admin.text("tbody") and NEW_DOMAIN not in admin.text("main")
    admin.open("/admin/users")
    assert f"@{NEW_DOMAIN}" not in admin.text("main")
    admin.open(f"/admin/domains/{NEW_DOMAIN}")
    assert admin.heading() == "Not allowed"
    existing = admin.text(".error")
    admin.open("/admin/domains/nosuch.test")
    assert admin.text(".error") == existing.replace(NEW_DOMAIN, "nosuch.test")
    admin.shot("forbidden", PHONE)
    admin.open(f"/admin/users/carol@{NEW_DOMAIN}")
    assert admin.heading() == "Not allowed"
    admin.open("/admin/queue")
    assert HELD_DOMAIN not in admin.text("main")
    admin.open("/admin/plugins/etrn")
    assert admin.heading() == f"Plugin etrn for domain {DOMAIN}"
    admin.open(f"/admin/plugins/etrn?domain={HELD_DOMAIN}")
    assert admin.heading() == "Not allowed"


def test_pages_are_protected_without_a_browser(server):
    """Over TLS with protocol negotiation (ALPN), as browsers connect: without a session a
    page leads to the sign-in form; pages forbid framing and foreign content; a sign-in form
    posted without its CSRF cookie signs no one in."""
    context = ssl.create_default_context(cafile=str(server.cert_path))
    context.set_alpn_protocols(["h2", "http/1.1"])  # as browsers and curl do

    def send(method: str, path: str, body: str = "", headers: dict | None = None):
        connection = http.client.HTTPSConnection(
            "localhost", server.ports["admin"], context=context, timeout=10
        )
        connection.request(method, path, body=body or None, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read().decode()

    status, headers, _ = send("GET", "/admin/users")
    assert status == 303 and headers["location"] == "/admin/login?next=%2Fadmin%2Fusers"
    status, headers, page = send("GET", "/admin/login")
    assert status == 200 and "Sign in" in page
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in headers["content-security-policy"]
    form = f"csrf=guessed&username={ROOT}&password={ROOT_PASSWORD}"
    kind = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, page = send("POST", "/admin/login", form, kind)
    assert status == 403 and "out of date" in page and "set-cookie" in headers
    assert "mailmax_admin=" not in (headers["set-cookie"] or "")
    status, headers, css = send("GET", "/admin/static/admin.css")
    assert status == 200 and headers["content-type"].startswith("text/css") and "--ink" in css


def _greeting(server, source: str) -> bytes:
    """The first line the SMTP listener sends a client connecting from ``source``."""
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10,
                                  source_address=(source, 0)) as sock:  # fmt: skip
        return sock.makefile("rb").readline()


def _filed(server, address: str, password: str, folder: str, subject: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"]) as imap:
        imap.starttls(server.ssl_context())
        imap.login(address, password)
        if imap.select(f'"{folder}"', readonly=True)[0] != "OK":
            return False
        return bool(imap.search(None, "SUBJECT", f'"{subject}"')[1][0])


def test_access_rule_and_rule_made_in_the_browser_take_effect(admin, server):
    """An access rule added in the browser refuses its clients at the SMTP greeting until it
    is deleted; a rule added for a user files their mail, a bad condition is refused next to
    the form; the rule is edited, switched off and deleted; a domain administrator has no
    access rules page and sees no system rule."""
    admin.driver.delete_all_cookies()
    admin.sign_in(ROOT, ROOT_PASSWORD)
    admin_cli(server, "plugin", "enable", "access")
    admin_cli(server, "plugin", "enable", "rules")
    admin.open("/admin/plugins")
    admin.submit("form.inline")
    assert "access" in admin.text(".flash") and "rules" in admin.text(".flash")

    admin.open("/admin/access")
    admin.fill({"f-pattern": "127.0.7.1-9", "f-comment": "noisy"})
    Select(admin.driver.find_element(By.ID, "f-kind")).select_by_visible_text("banned")
    admin.submit("form.narrow")
    assert "rule for 127.0.7.1-9 added (system list, number 1)" in admin.text(".flash")
    wait_for(lambda: _greeting(server, "127.0.7.5").startswith(b"554 "), what="the ban")
    admin.shot("access")
    admin.submit("tbody form[action='/admin/access/delete']")
    assert "rule for 127.0.7.1-9 deleted" in admin.text(".flash")
    wait_for(lambda: _greeting(server, "127.0.7.5").startswith(b"220 "), what="the unban")

    alice = f"alice@{DOMAIN}"
    admin.open("/admin/rules")
    admin.fill({"f-name": "web", "f-conditions": "header Subject contans web",
                "f-actions": "folder FromWeb", "f-user": alice})  # fmt: skip
    admin.submit("form.narrow")
    assert "nothing was changed" in admin.text("#f-name-error")
    admin.fill({"f-conditions": 'header Subject contains "web rule"'})
    admin.submit("form.narrow")
    assert f"rule 'web' added to the user {alice} list" in admin.text(".flash")

    def filed() -> bool:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.sendmail("sender@remote.test", [alice], b"Subject: web rule\r\n\r\nx\r\n")
        return _filed(server, alice, "alicesecret", "FromWeb", "web rule")

    wait_for(filed, what="the rule to file the mail")
    admin.shot("rules")
    admin.open("/admin/rules/test")
    admin.fill({"f-user": alice, "f-message": "Subject: a web rule test\n\nhello"})
    admin.submit("form.narrow")
    assert "store in: FromWeb" in admin.text("#rule-result")
    admin.open("/admin/rules")
    admin.click("tbody a[href^='/admin/rules/edit']")
    assert admin.heading() == "Rule web"
    admin.fill({"f-actions": "folder Elsewhere"})
    admin.submit("form.narrow")
    assert "rule 'web' of the user" in admin.text(".flash")
    assert "-> folder Elsewhere" in admin.text("tbody")
    admin.submit("tbody form[action='/admin/rules/switch']")
    assert "rule 'web' disabled" in admin.text(".flash")
    assert '"state": "disabled"' in admin_cli(server, "rule", "show", "web", "--user", alice,
                                              "--json")  # fmt: skip
    admin_cli(server, "rule", "add", "sys", "--system", "--if", "any", "--then", "note hi")

    sign_in_as(admin, DOMAIN_ADMIN, DOMAIN_ADMIN_PASSWORD)
    admin.open("/admin/access")
    assert admin.heading() == "Not allowed"
    admin.open("/admin/rules")
    assert "web" in admin.text("tbody") and "sys" not in admin.text("tbody")
    admin.submit("tbody form[action='/admin/rules/delete']")
    assert "rule 'web' of the user" in admin.text(".flash") and "No rule." in admin.text("tbody")
    admin_cli(server, "rule", "delete", "sys", "--system")
