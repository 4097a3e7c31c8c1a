"""What MailMax finds in LDAP for an address, and why (a domain whose users are in LDAP)."""

from __future__ import annotations

from mailmax.core.api import ldap as ldap_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, posted

pages = Pages()

TEST_FIELDS = [
    Field("address", "Address", required=True,
          help="An address of a domain whose users are in LDAP."),
    Field("password", "Password", kind="password", help="Empty: the password is not checked."),
]  # fmt: skip


@pages.page("/admin/ldap-test", methods=("GET", "POST"))
async def ldap_test(page: Page) -> bytes:
    """A form asking LDAP about an address, and what was found."""
    errors, values, report = FormError(), {}, None
    if page.request.method == b"POST":
        values = posted(TEST_FIELDS, page.form)
        body = ldap_api.LdapTest(
            address=values.get("address", ""), password=values.get("password") or None
        )
        try:
            report = await page.submit(ldap_api.ldap_test, body, values=values, primary="address")
        except FormError as refused:
            errors = refused
    return page.render("ldap_test.html", status=422 if errors else 200, report=report,
                       fields=TEST_FIELDS, values=values, errors=errors)  # fmt: skip
