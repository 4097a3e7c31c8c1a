"""What an administrator can do, in one place for every front end.

The CLI (``mailmax ...``) and the REST API call the same functions here, so a change made
either way is checked the same way, refused with the same text and recorded in the audit
log the same way. Each function takes the blocking directory (the API runs it in the
directory's thread pool) and the :class:`~mailmax.core.services.actor.Actor` doing it, which
says what they may touch.
"""
