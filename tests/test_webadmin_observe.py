"""The web admin's activity graphs, live trace and login records in headless Chromium,
against a running server: numbers that match the mail sent, an SMTP session's commands shown
as they happen (never its AUTH payload), an IMAP log-in on the user's page, and a domain
administrator who sees only their domain's activity."""

from __future__ import annotations

import base64
import http.client
import imaplib
import ssl
import time
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.api_support import start_api_server
from tests.fixtures.server import DOMAIN, MailMaxServer
from tests.fixtures.webadmin import (
    CAROL,
    CAROL_PASSWORD,
    OTHER,
    PHONE,
    Admin,
    add_two_admins,
    sign_in_as,
    signed_in,
)
from tests.fixtures.webadmin import browser as browser

#: Messages sent to alice before the dashboard is looked at.
SENT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailMaxServer]:
    """One server for the module: a system administrator, and carol administering other.test."""
    mail = start_api_server(
        tmp_path_factory.mktemp("webobserve") / "data", smtp={"allow_plaintext_auth": True}
    )
    add_two_admins(mail)
    yield mail
    try:
        mail.stop(timeout=15)
    except Exception:
        mail.kill()


@pytest.fixture(scope="module")
def admin(browser, server: MailMaxServer) -> Admin:
    """The browser on the module's server, signed in as the system administrator."""
    return signed_in(browser, server)


def bar(admin: Admin, kind: str, name: str, window: str) -> int:
    """The count a bar of a graph stands for."""
    css = f"#chart-{kind} rect[data-name='{name}'][data-window='{window}']"
    return int(admin.driver.find_element(By.CSS_SELECTOR, css).get_attribute("data-value"))


def test_dashboard_graphs_count_the_messages_sent(admin, server):
    """L4: after SENT messages over SMTP the messages graph of smtp shows SENT for every
    window, drawn and written as text, with the numbers in an accessible description."""
    with server.smtp() as smtp:
        for number in range(SENT):
            smtp.sendmail("sender@remote.test", [f"alice@{DOMAIN}"],
                          f"Subject: count {number}\r\n\r\nhello\r\n".encode())  # fmt: skip
    server.wait_for_mail(f"alice@{DOMAIN}", SENT)
    admin.open("/admin/")
    assert "Activity" in admin.text("main")
    for window in ("hour", "12h", "24h", "week"):
        assert bar(admin, "messages", "smtp", window) == SENT
    assert bar(admin, "connections", "smtp", "hour") >= 1
    assert bar(admin, "bytes", "smtp", "hour") > 0
    assert bar(admin, "failed_logins", "smtp", "hour") == 0
    drawn = admin.driver.find_element(By.CSS_SELECTOR, "#chart-messages svg")
    assert drawn.get_attribute("role") == "img"
    desc = admin.driver.find_element(By.CSS_SELECTOR, "#chart-messages desc")
    assert f"smtp: {SENT} in the last 1 h" in desc.get_attribute("textContent")
    counts = admin.driver.find_elements(By.CSS_SELECTOR, "#chart-messages text.count")
    assert str(SENT) in [element.text for element in counts]
    admin.shot("dashboard-activity")
    admin.shot("dashboard-phone", PHONE)


def test_trace_page_shows_an_smtp_session_as_it_happens(admin, server):
    """L3: the trace page, filtered on smtp, shows the commands of a session that starts
    after it opened, with the AUTH payload masked."""
    admin.open("/admin/trace?service=smtp")
    WebDriverWait(admin.driver, 10).until(
        lambda d: d.find_element(By.ID, "trace-status").get_attribute("data-state") == "open"
    )
    with server.smtp() as smtp:
        smtp.ehlo("browser-test.example")
        smtp.user, smtp.password = f"alice@{DOMAIN}", "alicesecret"
        smtp.auth("PLAIN", smtp.auth_plain)
        smtp.sendmail(f"alice@{DOMAIN}", [f"bob@{DOMAIN}"], b"Subject: traced\r\n\r\nhi\r\n")
    WebDriverWait(admin.driver, 10).until(lambda d: "QUIT" in admin.text("#trace-events"))
    shown = admin.text("#trace-events")
    assert "ehlo browser-test.example" in shown and "AUTH PLAIN ***" in shown
    assert f"rcpt TO:<bob@{DOMAIN}>" in shown
    secret = base64.b64encode(f"\0alice@{DOMAIN}\0alicesecret".encode()).decode()
    assert secret not in shown and "alicesecret" not in shown
    services = admin.driver.find_elements(By.CSS_SELECTOR, "#trace-events tbody td:nth-child(2)")
    assert services and {cell.text for cell in services} == {"smtp"}
    admin.shot("trace")
    admin.open("/admin/trace?service=gopher")
    assert admin.heading() == "Cannot do that" and "unknown service 'gopher'" in admin.text(
        ".error"
    )


def test_user_page_shows_an_imap_login(admin, server):
    """L3: a log-in over IMAP is listed on the user's page with its service and address."""
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"]) as imap:
        imap.starttls(server.ssl_context())
        imap.login(CAROL, CAROL_PASSWORD)
    deadline = time.monotonic() + 10
    while True:  # the record is written by the directory's thread after the reply
        admin.open(f"/admin/users/{CAROL}")
        if "imap" in admin.text("#logins") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    row = admin.text("#logins tbody tr")
    assert "imap" in row and "127.0.0.1" in row and "UTC" in row
    admin.shot("user-logins")


def test_domain_administrator_sees_their_domains_activity_only(admin, server):
    """A13, L4: carol, administrator of other.test, gets a graph for other.test alone, with
    the one message it received; no service's counts, no other domain."""
    with server.smtp() as smtp:
        smtp.sendmail("sender@remote.test", [CAROL], b"Subject: for carol\r\n\r\nhi\r\n")
    server.wait_for_mail(CAROL)
    sign_in_as(admin, CAROL, CAROL_PASSWORD)
    assert admin.heading() == "Dashboard"
    assert bar(admin, "messages", OTHER, "hour") == 1
    names = {
        element.get_attribute("data-name")
        for element in admin.driver.find_elements(By.CSS_SELECTOR, "rect.bar")
    }
    assert names == {OTHER}
    assert not admin.driver.find_elements(By.ID, "chart-connections")
    admin.open("/admin/trace")
    WebDriverWait(admin.driver, 10).until(
        lambda d: d.find_element(By.ID, "trace-status").get_attribute("data-state") == "open"
    )
    with server.smtp() as smtp:
        smtp.sendmail("sender@remote.test", [f"alice@{DOMAIN}"], b"Subject: x\r\n\r\nhi\r\n")
        smtp.sendmail("sender@remote.test", [CAROL], b"Subject: y\r\n\r\nhi\r\n")
    WebDriverWait(admin.driver, 10).until(lambda d: "delivered" in admin.text("#trace-events"))
    assert CAROL in admin.text("#trace-events") and "alice" not in admin.text("#trace-events")
    admin.open(f"/admin/users/alice@{DOMAIN}")
    assert admin.heading() == "Not allowed"


def test_signing_out_ends_the_trace(admin, server):
    """A trace open in one tab stops when the session signs out in another."""
    admin.open("/admin/trace")
    WebDriverWait(admin.driver, 10).until(
        lambda d: d.find_element(By.ID, "trace-status").get_attribute("data-state") == "open"
    )
    token = admin.driver.get_cookie("mailmax_admin")["value"]
    csrf = admin.driver.find_element(By.CSS_SELECTOR, "form.signout input[name=csrf]")
    context = ssl.create_default_context(cafile=str(server.cert_path))
    other_tab = http.client.HTTPSConnection("localhost", server.ports["admin"], context=context)
    other_tab.request(
        "POST",
        "/admin/logout",
        body=f"csrf={csrf.get_attribute('value')}",
        headers={"Cookie": f"mailmax_admin={token}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert other_tab.getresponse().status == 303
    other_tab.close()
    WebDriverWait(admin.driver, 15).until(
        lambda d: d.find_element(By.ID, "trace-status").get_attribute("data-state") == "closed"
    )
    assert "reload the page" in admin.text("#trace-status")
