"""What the SMTP, POP3 and IMAP servers share below their protocols.

- :mod:`.connection`: the connection base (line splitting with a maximum length, input flow
  control, backpressure on unread replies, TLS upgrade, idle timeouts on the reactor's clock,
  closing and graceful shutdown);
- :mod:`.factory`: the listener factory base (settings, session bookkeeping, admission);
- :mod:`.limits`: per-IP limits on concurrent sessions and on the rate of new connections.
"""
