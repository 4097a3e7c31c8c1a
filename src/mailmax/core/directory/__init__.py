"""The directory: domains, users, aliases, forwards, plugin overrides and login tracking.

:class:`SQLDirectory` is the blocking data layer (SQLite or PostgreSQL);
:class:`AsyncDirectory` is the server's non-blocking, briefly cached view of it.
"""

from mailmax.core.directory.api import (
    AccountType,
    BlankPasswordPolicy,
    DeleteMode,
    Domain,
    DomainType,
    Lookup,
    RecipientLookup,
    User,
)
from mailmax.core.directory.cached import AsyncDirectory
from mailmax.core.directory.errors import (
    AlreadyExists,
    DirectoryError,
    DirectoryUnavailable,
    NotFound,
)
from mailmax.core.directory.loginnames import (
    check_domain_name,
    check_user_name,
    parse_login,
    valid_user_name,
)
from mailmax.core.directory.passwords import hash_password, verify_password
from mailmax.core.directory.sql import SQLDirectory

__all__ = [
    "AccountType",
    "AlreadyExists",
    "AsyncDirectory",
    "BlankPasswordPolicy",
    "DeleteMode",
    "DirectoryError",
    "DirectoryUnavailable",
    "Domain",
    "DomainType",
    "Lookup",
    "NotFound",
    "RecipientLookup",
    "SQLDirectory",
    "User",
    "check_domain_name",
    "check_user_name",
    "hash_password",
    "parse_login",
    "valid_user_name",
    "verify_password",
]
