"""twistd dropin for MailMax: ``twistd mailmax``.

Lazy on purpose: twistd imports every dropin to list plugins, so this file only names the
module that builds the service.
"""

from twisted.application.service import ServiceMaker

mailmax = ServiceMaker(
    "MailMax",
    "mailmax.core.tap",
    "MailMax mail server: SMTP, submission, POP3, IMAP4 and the outbound queue",
    "mailmax",
)
