"""Log-ins through one ``twisted.cred`` portal: SMTP AUTH, POP3 (USER/PASS, APOP, AUTH) and IMAP.

The protocols build credentials and ask :func:`password_login` or :func:`hashed_login`; the
portal (:class:`MailPortal`) asks its checkers in turn and the realm (:class:`MailRealm`) turns
the account name a checker vouches for into the directory's
:class:`~mailmax.core.directory.api.User` (avatar interface :class:`IMailAccount`).

Credentials (``username`` and passwords in UTF-8 bytes, as Twisted's own checkers expect):
:class:`LoginPassword` provides ``IUsernamePassword`` (the password itself);
:class:`LoginDigest` provides ``IUsernameHashedPassword`` (APOP and CRAM-MD5: the checker
hands the clear password it keeps to ``checkPassword``). Both carry ``default_domain``, the
listener's domain for login names without one.

Checkers, asked in this order until one vouches for the credentials (a checker that fails with
``UnauthorizedLogin`` passes the credentials to the next; any other failure ends the log-in):
checkers added with :meth:`MailPortal.registerChecker` (a deployment's ``.tac`` file), those
the enabled plugins give through ``mailmax_credential_checkers``, then :class:`DirectoryChecker`
(the SQL directory and the LDAP sources of its domains). The failed-log-in throttle, log-in
records and the successful-log-in cache stay around the portal, in the protocols and the
directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.cred import credentials as cred
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from mailmax.core.directory.api import User
from mailmax.core.directory.errors import DirectoryError, DirectoryUnavailable

log = Logger(namespace="mailmax.auth")

#: The credential interfaces MailMax's protocols produce.
INTERFACES = (cred.IUsernamePassword, cred.IUsernameHashedPassword)


class IMailAccount(Interface):
    """The avatar of a mail log-in: a :class:`~mailmax.core.directory.api.User`."""


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


@implementer(cred.IUsernamePassword)
class LoginPassword(cred.UsernamePassword):
    """A login name and its password, as SMTP AUTH PLAIN/LOGIN, POP3 USER/PASS and IMAP LOGIN
    give them (UTF-8 bytes, as Twisted's checkers expect); ``default_domain`` completes a
    login name given without a domain."""

    def __init__(self, username: str, password: str, default_domain: str = "") -> None:
        super().__init__(_bytes(username), _bytes(password))
        self.default_domain = default_domain


@implementer(cred.IUsernameHashedPassword)
class LoginDigest:
    """A login name and a digest made with the password (APOP, CRAM-MD5): ``checkPassword``
    tells whether a clear password produces the digest."""

    def __init__(
        self, username: str, verify: Callable[[str], bool], default_domain: str = ""
    ) -> None:
        self.username = _bytes(username)
        self.default_domain = default_domain
        self._verify = verify

    def checkPassword(self, password: bytes | str) -> bool:
        """True when ``password`` gives the digest the client sent."""
        return bool(self._verify(_text(password)))


class Account(str):
    """An account name as the directory checker vouches for it, with its User attached (so the
    realm need not look it up again)."""

    user: User

    def __new__(cls, user: User) -> Account:
        made = super().__new__(cls, user.address)
        made.user = user
        return made


@implementer(ICredentialsChecker)
class DirectoryChecker:
    """Passwords checked by the directory (SQL, or an LDAP source per domain); digests checked
    against the clear password kept for APOP and CRAM-MD5."""

    credentialInterfaces = INTERFACES

    def __init__(self, directory: Any) -> None:
        self.directory = directory

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Account]:
        """The account the credentials prove, or a failure with ``UnauthorizedLogin``."""
        domain = getattr(credentials, "default_domain", "")
        if cred.IUsernamePassword.providedBy(credentials):
            found = defer.maybeDeferred(
                self.directory.authenticate,
                _text(credentials.username),
                _text(credentials.password),
                domain,
            )
            return found.addCallback(_vouch)

        def check(result: tuple[User, str] | None) -> Account:
            if result is None or not credentials.checkPassword(result[1]):
                raise UnauthorizedLogin()
            return Account(result[0])

        found = defer.maybeDeferred(
            self.directory.clear_password, _text(credentials.username), domain
        )
        return found.addCallback(check)


def _vouch(user: User | None) -> Account:
    if user is None:
        raise UnauthorizedLogin()
    return Account(user)


@implementer(ICredentialsChecker)
class CheckerChain:
    """Checkers asked in turn (see the module): the first that vouches wins."""

    credentialInterfaces = INTERFACES

    def __init__(self, last: Any, extra: Callable[[], Iterable[Any]] = tuple) -> None:
        self.registered: list[Any] = []
        self._last = last
        self._extra = extra

    def checkers_for(self, credentials: Any) -> list[Any]:
        """The checkers that take these credentials, in the order they are asked."""
        chain = [*self.registered, *self._extra(), self._last]
        return [
            checker
            for checker in chain
            if any(i.providedBy(credentials) for i in checker.credentialInterfaces)
        ]

    async def _request(self, credentials: Any) -> Any:
        for checker in self.checkers_for(credentials):
            try:
                return await defer.maybeDeferred(checker.requestAvatarId, credentials)
            except UnauthorizedLogin:
                continue
        raise UnauthorizedLogin()

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        """The account the first willing checker vouches for."""
        return defer.ensureDeferred(self._request(credentials))


@implementer(IRealm)
class MailRealm:
    """Account names to Users: the directory checker's come with theirs; an account another
    checker vouches for must be a user of the directory."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory

    async def _avatar(self, avatar_id: Any, interfaces: tuple[Any, ...]) -> tuple[Any, ...]:
        if IMailAccount not in interfaces:
            raise NotImplementedError("MailMax's realm only gives mail accounts")
        user = getattr(avatar_id, "user", None)
        if user is None:
            user = await defer.maybeDeferred(self.directory.get_user, _text(avatar_id))
            if user is None or not user.enabled:
                raise UnauthorizedLogin()
        return IMailAccount, user, lambda: None

    def requestAvatar(
        self,
        avatarId: Any,
        mind: Any,
        *interfaces: Any,
    ) -> defer.Deferred[tuple[Any, ...]]:
        """``(IMailAccount, user, logout)`` for an account name."""
        return defer.ensureDeferred(self._avatar(avatarId, interfaces))


class MailPortal(Portal):
    """The one portal of a server (see the module). :meth:`registerChecker` adds a checker
    that is asked before the plugins' and the directory's."""

    def __init__(self, directory: Any, plugin_checkers: Callable[[], Iterable[Any]] = tuple):
        self.directory_checker = DirectoryChecker(directory)
        self.chain = CheckerChain(self.directory_checker, plugin_checkers)
        super().__init__(MailRealm(directory), [self.chain])

    def use_directory(self, directory: Any) -> None:
        """Check passwords with ``directory`` from now on (the server's, once it is open)."""
        self.directory_checker.directory = directory
        self.realm.directory = directory

    def registerChecker(self, checker: Any, *credentialInterfaces: Any) -> None:
        """Ask ``checker`` before the plugins' checkers and the directory."""
        if checker is getattr(self, "chain", None):
            super().registerChecker(checker, *credentialInterfaces)
            return
        self.chain.registered.append(checker)


def plugin_checkers(plugins: Callable[[], Any]) -> Callable[[], list[Any]]:
    """The checkers the enabled plugins of the current plugin set give, flattened."""

    def current() -> list[Any]:
        found: list[Any] = []
        for result in plugins().all_results("mailmax_credential_checkers"):
            found.extend(result or ())
        return found

    return current


async def _avatar_of(portal: Portal, credentials: Any) -> User | None:
    try:
        _, user, _ = await portal.login(credentials, None, IMailAccount)
    except UnauthorizedLogin:
        return None
    except (DirectoryUnavailable, DirectoryError):
        raise
    except Exception as exc:
        log.failure("a credential checker failed")
        raise DirectoryUnavailable(f"a credential checker failed: {exc!r}") from exc
    return user


def password_login(
    portal: Portal, login: str, password: str, default_domain: str
) -> defer.Deferred[User | None]:
    """The user a login name and password prove through ``portal``, or None."""
    return defer.ensureDeferred(_avatar_of(portal, LoginPassword(login, password, default_domain)))


def hashed_login(
    portal: Portal, login: str, verify: Callable[[str], bool], default_domain: str
) -> defer.Deferred[User | None]:
    """The user whose clear password ``verify`` accepts (APOP, CRAM-MD5), or None."""
    return defer.ensureDeferred(_avatar_of(portal, LoginDigest(login, verify, default_domain)))
