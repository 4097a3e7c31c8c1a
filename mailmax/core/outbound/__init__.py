"""Outbound delivery: MX look-up, the SMTP client, routes, session limits, retries.

The queue runner hands the remote recipients of a message to
:class:`~mailmax.core.outbound.delivery.OutboundDelivery`, which groups them by destination,
asks the routing hook where each group goes, and sends each group in one SMTP transaction,
returning one result per recipient. :mod:`~mailmax.core.outbound.retry` decides what a
temporary failure means: try again in the retry queue, move to the soft-error queue (with a
warning to the sender), or give up.
"""
