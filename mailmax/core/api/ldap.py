"""LDAP user sources: what MailMax finds for an address, and why."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mailmax.core.api.routing import Access, RequestContext, Router
from mailmax.core.services.ldap import ldap_report

router = Router("ldap")


class LdapTest(BaseModel):
    """An address of a domain whose users are in LDAP; a password to check, if given."""

    model_config = ConfigDict(extra="forbid")

    address: str
    password: str | None = None


@router.post("/api/v1/ldap/test", summary="What LDAP gives for an address", access=Access.ANY,
             body=LdapTest, response=dict[str, Any])  # fmt: skip
async def ldap_test(ctx: RequestContext) -> dict[str, Any]:
    """The domain's user source, the LDAP filter, the entry found, the user it makes and what
    mail to the address would do (``lookup``), as `mailmax ldap test` shows them."""
    body: LdapTest = ctx.body
    return await ctx.run(ldap_report, ctx.directory, ctx.actor, body.address, body.password)
