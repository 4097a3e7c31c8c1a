"""User names, domain names and the login-name forms.

User names are ASCII letters and digits plus ``. _ - + ' ! # $ & * = ? ^ ` { | } ~``
(RFC 5322 ``atext`` without ``/`` and ``%``, which separate a user from a domain in login names),
at most 64 characters; a dot may not start or end a name nor follow another dot. Names are
case-insensitive and kept in lower case.

Domain names are IDNA (UTS #46) names kept in their lower-case ASCII form (``xn--`` labels),
at most 253 characters, each label 1 to 63 characters.

Login names: ``user``, ``user@domain``, ``user%domain``, ``user/domain`` and
``domain/user``; a bare ``user`` is looked up in the listening address's default domain.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import idna

from mailmax.core.directory.errors import DirectoryError

#: Characters allowed in a user name besides ASCII letters and digits.
USER_NAME_SYMBOLS = ".-_+'!#$&*=?^`{|}~"
_USER_NAME_CHARS = frozenset(string.ascii_letters + string.digits + USER_NAME_SYMBOLS)
MAX_USER_NAME = 64
MAX_DOMAIN_NAME = 253
_LOGIN_SEPARATORS = "@%/"


def _user_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_USER_NAME:
        return f"it has {len(name)} characters; the limit is {MAX_USER_NAME}"
    bad = sorted({c for c in name if c not in _USER_NAME_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"it contains {shown}; use letters, digits and {' '.join(USER_NAME_SYMBOLS)} only "
            "(never /, @, %, spaces or control characters)"
        )
    if name.startswith(".") or name.endswith("."):
        return "it starts or ends with a dot"
    if ".." in name:
        return "it has two dots in a row"
    return None


def valid_user_name(name: object) -> bool:
    """True when ``name`` is an acceptable user (or alias) name, in any letter case."""
    return _user_name_problem(name) is None


def check_user_name(name: str) -> str:
    """Return ``name`` in lower case, or raise :class:`DirectoryError` saying what is wrong."""
    problem = _user_name_problem(name)
    if problem:
        raise DirectoryError(f"user name {name!r} is not valid: {problem}")
    return name.lower()


def check_domain_name(name: str) -> str:
    """Return the domain's canonical form (lower-case ASCII, IDNA), or raise DirectoryError."""
    if not isinstance(name, str) or not name.strip():
        raise DirectoryError("the domain name is empty; give a name such as example.com")
    text = name[:-1] if name.endswith(".") else name
    hint = "use labels of letters, digits and hyphens separated by dots, e.g. mail.example.com"
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise DirectoryError(f"domain name {name!r} contains spaces or control characters; {hint}")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except (UnicodeError, ValueError) as exc:
        raise DirectoryError(f"domain name {name!r} is not valid ({exc}); {hint}") from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > MAX_DOMAIN_NAME:
        raise DirectoryError(
            f"domain name {name!r} is {len(ascii_name)} characters long; "
            f"the limit is {MAX_DOMAIN_NAME}"
        )
    for label in ascii_name.split("."):
        if not 1 <= len(label) <= 63:
            raise DirectoryError(
                f"domain name {name!r} has a label of {len(label)} characters; "
                f"each label needs 1 to 63; {hint}"
            )
    return ascii_name


def check_mail_domain(name: str) -> str:
    """Like :func:`check_domain_name`, for a domain that gets mail: it needs two labels or more.

    The one rule for every domain an admin names (``mailmax init --domain``, ``domain add``,
    domain aliases, remote alias targets): a single label such as ``nodots`` is no mail domain.
    """
    canonical = check_domain_name(name)
    if "." not in canonical.rstrip("."):
        raise DirectoryError(
            f"domain name {name!r} has a single label; a mail domain needs at least two, "
            "e.g. example.com"
        )
    return canonical.rstrip(".")


def _valid_domain(name: str) -> str | None:
    try:
        return check_domain_name(name)
    except DirectoryError:
        return None


def parse_login(
    login: str, default_domain: str, is_domain: Callable[[str], bool]
) -> tuple[str, str]:
    """Split a login name into ``(user name, domain)``, both canonical.

    ``is_domain`` tells whether a canonical domain name is served here (domain aliases
    included); it decides between ``user/domain`` and ``domain/user``. Raises
    :class:`DirectoryError` when the login cannot name a user.
    """
    if not isinstance(login, str) or not login:
        raise DirectoryError("the login name is empty")
    used = [sep for sep in _LOGIN_SEPARATORS if sep in login]
    count = sum(login.count(sep) for sep in _LOGIN_SEPARATORS)
    if count == 0:
        if not default_domain:
            raise DirectoryError(
                f"login {login!r} has no domain and this address has no default domain; "
                "log in as user@domain"
            )
        return check_user_name(login), check_domain_name(default_domain)
    if count > 1:
        raise DirectoryError(
            f"login {login!r} has more than one of @, % and /; "
            "use user@domain, user%domain, user/domain or domain/user"
        )
    left, _, right = login.partition(used[0])
    if used[0] != "/":
        return check_user_name(left), check_domain_name(right)
    candidates = [(left, right), (right, left)]  # user/domain first, then domain/user
    valid = [
        (user.lower(), domain)
        for user, dom in candidates
        if valid_user_name(user) and (domain := _valid_domain(dom)) is not None
    ]
    for user, domain in valid:
        if is_domain(domain):
            return user, domain
    if valid:
        return valid[0]
    raise DirectoryError(
        f"login {login!r} is neither user/domain nor domain/user with a valid user name and domain"
    )


_REMOTE_LOCAL_CHARS = _USER_NAME_CHARS | set("%/")


def check_target(target: str, default_domain: str) -> str:
    """A forwarding or alias target as ``local@domain`` (domain canonical).

    A bare local part is taken to be in ``default_domain``. Remote local parts keep their
    letter case (other systems may tell cases apart); they may also use ``%`` and ``/``.
    """
    if not isinstance(target, str) or not target.strip():
        raise DirectoryError("a target address is empty; give addresses such as bob@example.com")
    text = target.strip()
    if "@" not in text:
        return f"{check_user_name(text)}@{check_domain_name(default_domain)}"
    local, _, domain = text.rpartition("@")
    bad = sorted({c for c in local if c not in _REMOTE_LOCAL_CHARS})
    if not local or len(local) > MAX_USER_NAME or bad:
        raise DirectoryError(
            f"target {target!r} is not an address this server can deliver to: the part before @ "
            f"must be 1 to {MAX_USER_NAME} letters, digits or {USER_NAME_SYMBOLS}%/"
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise DirectoryError(f"target {target!r} has a misplaced dot before the @")
    return f"{local}@{check_domain_name(domain)}"
