"""Errors raised by the directory: each message says what is wrong and how to fix it."""

from __future__ import annotations


class DirectoryError(ValueError):
    """A directory request cannot be done as asked (bad name, collision, missing record...)."""


class NotFound(DirectoryError):
    """The domain, user, alias or forward named does not exist."""


class AlreadyExists(DirectoryError):
    """The name is already taken (by a domain, a domain alias, a user or a user alias)."""


class DirectoryUnavailable(RuntimeError):
    """The directory database cannot be reached or used right now (a temporary failure)."""


class FieldError(DirectoryError):
    """A bad value for one field of a domain or user.

    The message names the field where ``{field}`` stands in ``template``, so each front end
    can spell it its own way (``delivery_host`` in code, ``--delivery-host`` in the CLI).
    """

    def __init__(self, field: str, template: str) -> None:
        self.field = field
        self.template = template
        super().__init__(self.named(field))

    def named(self, name: str) -> str:
        """The message with the field called ``name``."""
        return self.template.replace("{field}", name)
