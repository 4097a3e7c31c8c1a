"""Loopback helpers shared by the benchmark scripts: free ports, waiting for an SMTP greeting."""

from __future__ import annotations

import ipaddress
import socket
import time

LOOPBACK = "127.0.0.1"


def require_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback IP address; raise ValueError otherwise."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not an IP address: {host!r} (loopback addresses only)") from None
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address (the benchmark stays on loopback)")
    return host


def free_port(host: str = LOOPBACK) -> int:
    """An unprivileged TCP port on ``host`` that is free right now (chosen by the kernel)."""
    require_loopback(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def smtp_greets(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a server on ``host:port`` accepts a connection and sends a 220 greeting."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            if not data.startswith(b"220"):
                return False
            sock.sendall(b"QUIT\r\n")
            return True
    except OSError:
        return False


def wait_for_smtp(host: str, port: int, timeout: float, alive=None) -> None:
    """Poll until ``host:port`` greets with 220; raise TimeoutError after ``timeout`` seconds.

    ``alive``, when given, is called between polls; a false result means the server process
    died and raises RuntimeError at once instead of waiting for the timeout.
    """
    require_loopback(host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if smtp_greets(host, port):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {host}:{port} exited before it greeted")
        time.sleep(0.1)
    raise TimeoutError(f"no SMTP greeting on {host}:{port} within {timeout:.0f} s")
