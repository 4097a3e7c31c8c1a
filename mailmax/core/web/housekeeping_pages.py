"""Housekeeping now: a dry run that says what would be done, or the real run, and its report."""

from __future__ import annotations

from mailmax.core.api import housekeeping as housekeeping_api
from mailmax.core.web.app import Page, Pages
from mailmax.core.web.forms import Field, FormError, posted

pages = Pages()

RUN_FIELDS = [
    Field("domain", "Domain",
          help="Only this domain; empty: every domain (system administrators only)."),
]  # fmt: skip


@pages.page("/admin/housekeeping", methods=("GET", "POST"))
async def housekeeping(page: Page) -> bytes:
    """A form to run housekeeping (or a dry run) and the report of the last run."""
    errors, values, report = FormError(), {}, None
    if page.request.method == b"POST":
        values = posted(RUN_FIELDS, page.form)
        body = housekeeping_api.HousekeepingRun(
            dry_run=page.form.get("action") != "run", domain=values.get("domain") or None
        )
        try:
            report = await page.submit(
                housekeeping_api.run_housekeeping, body, values=values, primary="domain"
            )
        except FormError as refused:
            errors = refused
    return page.render("housekeeping.html", status=422 if errors else 200, report=report,
                       fields=RUN_FIELDS, values=values, errors=errors)  # fmt: skip
