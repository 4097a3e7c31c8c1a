"""The attachment walk and the external command scanner, with a real process as the scanner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import defer

from mailmax.plugins.antivirus.clamdclient import ScannerError
from mailmax.plugins.antivirus.command import CommandScanner, split_command
from mailmax.plugins.antivirus.mime import attachments, safe_file_name
from mailmax.plugins.antivirus.tests.messages import clean_message, nested_message
from tests.fixtures.clamd import TEST_VIRUS
from tests.test_spool_reactor import ReactorThread, running_reactor

SCRIPT = Path(__file__).with_name("remove_matching.py")


@pytest.fixture(scope="module")
def reactor_thread() -> Iterator[ReactorThread]:
    """A running private reactor for the scanner's processes and threads."""
    yield from running_reactor()


def test_attachments_are_decoded_however_deep_with_their_rfc2231_names() -> None:
    found = attachments(nested_message(), max_depth=8)
    assert [(a.filename, a.payload) for a in found] == [
        ("a.pdf", b"just a report"),
        ("tëst virus.com", TEST_VIRUS),
    ]
    assert found[1].path == (2, 1)
    assert safe_file_name(found[1], 2) == "2-t_st_virus.com"


def test_a_part_nested_deeper_than_the_limit_is_handed_over_whole() -> None:
    found = attachments(nested_message(), max_depth=1)
    whole = [a for a in found if a.whole]
    assert len(whole) == 1 and whole[0].content_type == "multipart/mixed"
    assert b"Content-Transfer-Encoding: base64" in whole[0].payload


def test_file_names_cannot_leave_the_folder() -> None:
    part = attachments(nested_message(filename="../../etc/passwd"), 8)[1]
    assert safe_file_name(part, 1) == "1-passwd"


def run_scan(rt: ReactorThread, scanner: CommandScanner, message: bytes) -> object:
    return rt.call(lambda: defer.ensureDeferred(scanner.scan(message)), timeout=30)


def scanner(rt: ReactorThread, *args: str, timeout: float = 20, infected=frozenset()) -> object:
    argv = split_command(" ".join([sys.executable, str(SCRIPT), *args]))
    return CommandScanner(rt.reactor, argv, timeout=timeout, infected_statuses=infected)


def test_a_removed_attachment_means_infected_and_the_folder_is_cleaned_up(
    reactor_thread: ReactorThread, tmp_path: Path
) -> None:
    record = tmp_path / "seen.txt"
    found = run_scan(
        reactor_thread,
        scanner(reactor_thread, "%d", "'*.com'", "--record", str(record)),
        nested_message(),
    )
    assert found.infected and found.removed == ("2-t_st_virus.com",)
    assert found.virus == "removed by the scanner: 2-t_st_virus.com"
    assert "scanner output for the log" in found.output
    workdir, folder, *seen = record.read_text().splitlines()
    assert seen == ["1-a.pdf", "2-t_st_virus.com"]
    assert Path(folder).parent == Path(workdir)
    assert not Path(workdir).exists(), "the temporary folder must be removed"


def test_nothing_removed_is_clean(reactor_thread: ReactorThread) -> None:
    found = run_scan(reactor_thread, scanner(reactor_thread, "%d", "'*.exe'"), clean_message())
    assert not found.infected and found.virus is None


def test_whole_message_mode_and_an_infected_exit_status(
    reactor_thread: ReactorThread, tmp_path: Path
) -> None:
    record = tmp_path / "seen.txt"
    args = ("%M", "x", "--exit", "3", "--record", str(record))
    found = run_scan(reactor_thread, scanner(reactor_thread, *args, infected={3}), clean_message())
    assert found.infected and found.virus == "scanner exit status 3"
    assert record.read_text().splitlines()[2] == "From: sender@elsewhere.test"


def test_an_unexpected_status_or_a_timeout_is_a_failure_never_clean(
    reactor_thread: ReactorThread,
) -> None:
    with pytest.raises(ScannerError, match="failed with status 2"):
        run_scan(reactor_thread, scanner(reactor_thread, "%d", "x", "--exit", "2"), b"Hi\r\n")
    slow = scanner(reactor_thread, "%d", "x", "--sleep", "30", timeout=0.5)
    with pytest.raises(ScannerError, match=r"longer than 0\.5 s and was stopped"):
        run_scan(reactor_thread, slow, b"Hi\r\n")


def test_commands_that_cannot_work_are_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="must name %d"):
        split_command("/bin/true")
    with pytest.raises(ValueError, match="not an executable"):
        split_command("no-such-scanner %d")
    with pytest.raises(ValueError, match="empty"):
        split_command("  ")
