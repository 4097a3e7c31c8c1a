"""Holds local delivery while the file named by the ``marker`` setting exists.

Lets a test stop the world between the 250 reply and the Maildir delivery.
"""

from __future__ import annotations

import os

from mailmax.core.hookspecs import hookimpl
from mailmax.core.verdicts import tempfail


@hookimpl
def mailmax_deliver(mailbox, config):
    """Temporary failure while the marker file exists; no opinion otherwise."""
    if os.path.exists(config["marker"]):
        return tempfail("held by the test", 451, "4.3.0")
    return None
