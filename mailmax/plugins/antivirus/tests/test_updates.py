"""Definition updates against a real clamd: after an update, what clamd passed before is caught."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import defer

from mailmax.core.programs import split_program
from mailmax.plugins.antivirus.clamdclient import ClamdClient
from mailmax.plugins.antivirus.updates import DefinitionUpdater, describe
from tests.fixtures.clamd import LATER_CONTENT, LATER_NAME, LATER_SIGNATURE_LINE, Clamd
from tests.test_spool_reactor import ReactorThread, running_reactor

SCRIPT = Path(__file__).with_name("drop_signature.py")


@pytest.fixture
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the update's process and clamd connections."""
    yield from running_reactor()


def updater(rt: ReactorThread, clamd: Clamd, tmp_path: Path, *extra: str) -> DefinitionUpdater:
    source = tmp_path / "later.ndb"
    source.write_text(LATER_SIGNATURE_LINE)
    line = f"{sys.executable} {SCRIPT} {source} {clamd.database} {tmp_path / 'runs.log'}"
    argv = split_program(" ".join([line, *extra]), "update")
    client = ClamdClient(rt.reactor, str(clamd.socket_path), timeout=10)
    return DefinitionUpdater(rt.reactor, argv, timeout=20, clamd=client)


def test_an_update_teaches_clamd_what_it_passed_before(
    fresh_clamd: Clamd, reactor_thread: ReactorThread, tmp_path: Path
) -> None:
    update = updater(reactor_thread, fresh_clamd, tmp_path)
    client = ClamdClient(reactor_thread.reactor, fresh_clamd.tcp, timeout=10)
    before = reactor_thread.call(lambda: defer.ensureDeferred(client.scan(LATER_CONTENT)))
    assert not before.infected

    first, second = reactor_thread.call(lambda: defer.gatherResults([update.run(), update.run()]))
    assert first is second and first.ok, first.error
    assert (tmp_path / "runs.log").read_text() == "run\n", "one update for two requests"
    assert first.version and first.version.startswith("ClamAV")
    assert "1 new signature" in first.output
    assert update.last is first and describe(first).startswith("updated at ")

    fresh_clamd.wait_catches(LATER_CONTENT)
    after = reactor_thread.call(lambda: defer.ensureDeferred(client.scan(LATER_CONTENT)))
    assert after.virus == LATER_NAME


def test_a_failing_update_is_reported_and_changes_nothing(
    clamd_server: Clamd, reactor_thread: ReactorThread, tmp_path: Path
) -> None:
    update = updater(reactor_thread, clamd_server, tmp_path, "--fail")
    result = reactor_thread.call(update.run)
    assert not result.ok and result.status == 2
    assert "exited with status 2" in (result.error or "")
    assert "mirror unreachable" in result.output
    assert describe(result).startswith("update failed at ")
    assert not (clamd_server.database / "later.ndb").exists()
