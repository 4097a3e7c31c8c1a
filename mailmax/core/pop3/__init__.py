"""The POP3 server: USER/PASS, APOP, SASL PLAIN, STLS, CAPA, TOP, UIDL, over the store."""

from mailmax.core.pop3.server import POP3Factory, POP3Server

__all__ = ["POP3Factory", "POP3Server"]
