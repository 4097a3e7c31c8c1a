"""The clamd client against a real clamd (our test signatures), and against broken scanners."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from twisted.internet import defer, reactor

from mailmax.plugins.antivirus.clamdclient import ClamdClient, ScannerError, endpoint_for
from tests.fixtures.clamd import (
    LATER_CONTENT,
    LATER_NAME,
    LATER_SIGNATURE_LINE,
    TEST_VIRUS,
    TEST_VIRUS_NAME,
    Clamd,
)
from tests.test_spool_reactor import ReactorThread, running_reactor


@pytest.fixture(scope="module")
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the client's connections."""
    yield from running_reactor()


def scan(rt: ReactorThread, client: ClamdClient, data: bytes) -> object:
    return rt.call(lambda: defer.ensureDeferred(client.scan(data)))


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_instream_finds_the_test_virus_and_passes_clean_data(
    clamd_server: Clamd, reactor_thread: ReactorThread, where: str
) -> None:
    address = str(clamd_server.socket_path) if where == "unix" else clamd_server.tcp
    client = ClamdClient(reactor_thread.reactor, address, timeout=10)
    found = scan(reactor_thread, client, b"prefix " + TEST_VIRUS + b" suffix")
    assert found.virus == TEST_VIRUS_NAME and found.infected
    clean = scan(reactor_thread, client, b"hello world\r\n" * 20000)  # several chunks
    assert clean.virus is None and not clean.infected


def test_version_ping_and_reload_teach_clamd_a_new_signature(
    fresh_clamd: Clamd, reactor_thread: ReactorThread
) -> None:
    client = ClamdClient(reactor_thread.reactor, str(fresh_clamd.socket_path), timeout=10)
    assert reactor_thread.call(lambda: defer.ensureDeferred(client.ping()))
    assert reactor_thread.call(lambda: defer.ensureDeferred(client.version())).startswith("ClamAV")
    assert scan(reactor_thread, client, LATER_CONTENT).virus is None
    fresh_clamd.add_signature(LATER_SIGNATURE_LINE)
    reactor_thread.call(lambda: defer.ensureDeferred(client.reload()))
    fresh_clamd.wait_catches(LATER_CONTENT)
    assert scan(reactor_thread, client, LATER_CONTENT).virus == LATER_NAME


def _broken_scanner(behaviour: str) -> tuple[socket.socket, threading.Event]:
    """A TCP listener that accepts and then hangs, or closes without a reply."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    done = threading.Event()

    def serve() -> None:
        held = []
        while not done.is_set():
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if behaviour == "close":
                conn.recv(65536)
                conn.close()
            else:
                held.append(conn)
        for conn in held:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, done


@pytest.mark.parametrize("behaviour", ["hang", "close"])
def test_a_scanner_that_hangs_or_hangs_up_is_an_error_never_clean(
    reactor_thread: ReactorThread, behaviour: str
) -> None:
    listener, done = _broken_scanner(behaviour)
    try:
        port = listener.getsockname()[1]
        client = ClamdClient(reactor_thread.reactor, f"127.0.0.1:{port}", timeout=0.5)
        with pytest.raises(ScannerError):
            scan(reactor_thread, client, b"data")
    finally:
        done.set()
        listener.close()


def test_nobody_listening_is_an_error(reactor_thread: ReactorThread, tmp_path) -> None:
    client = ClamdClient(reactor_thread.reactor, str(tmp_path / "no.sock"), timeout=2)
    with pytest.raises(ScannerError, match="cannot reach clamd"):
        scan(reactor_thread, client, b"data")


def test_scans_beyond_the_parallel_bound_wait_their_turn(
    clamd_server: Clamd, reactor_thread: ReactorThread
) -> None:
    client = ClamdClient(reactor_thread.reactor, clamd_server.tcp, timeout=10, parallel=2)
    peak = {"now": 0, "max": 0}
    real_call = client._call

    async def counting(command: bytes, payload: bytes | None = None) -> str:
        peak["now"] += 1
        peak["max"] = max(peak["max"], peak["now"])
        try:
            return await real_call(command, payload)
        finally:
            peak["now"] -= 1

    client._call = counting  # type: ignore[method-assign]
    data = [TEST_VIRUS if i % 2 else b"clean" * 1000 for i in range(8)]

    def all_scans() -> defer.Deferred[list[object]]:
        return defer.gatherResults([defer.ensureDeferred(client.scan(d)) for d in data])

    results = reactor_thread.call(all_scans)
    assert [r.infected for r in results] == [bool(i % 2) for i in range(8)]
    assert peak["max"] == 2


def test_an_address_that_is_neither_path_nor_host_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        endpoint_for(reactor, "clamd.example", 1)
