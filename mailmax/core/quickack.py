"""Acknowledging received bytes at once while a client is still sending a request.

A client that writes a request in pieces (IMAP's ``APPEND``: the literal, then the line end
in a second small write) holds the last piece back until the server acknowledges the first
(Nagle's algorithm), and the server's TCP stack delays that acknowledgement (up to 40 ms on
Linux) hoping to send it with a reply that cannot come before the request is complete.
:func:`ack_now` asks the stack to acknowledge at once (``TCP_QUICKACK``, Linux; a no-op
elsewhere).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _tcp_socket(transport: Any) -> socket.socket | None:
    """The TCP socket under a transport (through a TLS layer), or None."""
    for _ in range(4):
        handle = getattr(transport, "socket", None)
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


def ack_now(transport: Any) -> None:
    """Acknowledge what the connection received so far without the usual delay."""
    if _QUICKACK is None:
        return
    sock = _tcp_socket(transport)
    if sock is None:
        return
    with contextlib.suppress(OSError):  # closed meanwhile, or not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
