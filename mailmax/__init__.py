"""MailMax: a mail server in one Twisted process, extensible with Python plugins."""

__version__ = "0.1.0"
