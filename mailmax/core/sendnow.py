"""Sending a reply at once instead of on the reactor's next turn.

Twisted's ``transport.write`` only buffers: the bytes leave on the next reactor iteration,
after the descriptor was registered for writing (and is unregistered again afterwards). A
mail session answers one short line per command, so that costs two ``epoll_ctl`` calls, one
more pass through the reactor and its latency for every reply. :func:`write_now` sends
straight away when that is safe: a plain TCP connection or a process pipe (never a TLS one,
whose bytes must go through the TLS layer) with nothing buffered before it; whatever the
socket does not take at once is handed to ``transport.write`` as usual, so order, flow
control and error handling stay Twisted's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import process, tcp


def _direct(transport: Any) -> bool:
    """True when ``transport`` may be written to directly right now."""
    if isinstance(transport, tcp.Connection):
        if transport.TLS:
            return False
    elif not isinstance(transport, process.ProcessWriter):
        return False
    return (
        transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    )


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``, sending it before returning when that is safe."""
    if data and _direct(transport):
        sent = transport.writeSomeData(data)
        if not isinstance(sent, int):  # the connection is gone: let Twisted find out as usual
            sent = 0
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)
