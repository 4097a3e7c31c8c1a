"""MailMax's SMTP server: inbound mail on port 25 and submission on 587/465.

Twisted carries the bytes (transport, TLS, reactor, logging); the protocol itself, its parsing,
its DATA reader and its SASL mechanisms are MailMax's own code.
"""

from mailmax.core.smtp.factory import PluginSMTPFactory, SMTPFactory
from mailmax.core.smtp.server import SMTPServer

__all__ = ["PluginSMTPFactory", "SMTPFactory", "SMTPServer"]
