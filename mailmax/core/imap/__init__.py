"""IMAP4rev1 server: protocol, parser, FETCH/SEARCH, MIME structure, folder listing.

The service builds :class:`mailmax.core.imap.factory.IMAPFactory` for each ``imap``/``imaps``
listener.
"""
