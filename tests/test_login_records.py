"""Log-ins are written to the directory in batches (S5): a lone log-in at once, a burst in
one write after the last, none lost at shutdown. Time is a ``Clock``; the directory is real."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from mailmax.core.directory import SQLDirectory
from mailmax.core.directory.loginrecords import MIN_WRITE_INTERVAL, LoginRecorder


def test_login_records_are_batched_and_none_is_lost(tmp_path) -> None:
    """One write per burst, the lone log-in right away, pending ones handed over at the end."""
    clock = Clock()
    with SQLDirectory.open(f"sqlite:///{tmp_path / 'd.db'}") as directory:
        directory.add_domain("example.com", str(tmp_path / "mail"))
        directory.add_user("bob@example.com")
        writes: list[int] = []

        def write(records):
            writes.append(len(records))
            return defer.maybeDeferred(directory.record_logins, records)

        recorder = LoginRecorder(write, clock)
        first = recorder.record("bob@example.com", "imap", "192.0.2.1")
        assert first.called and writes == [1]  # a lone log-in is written at once
        burst = [recorder.record("bob@example.com", "pop3", f"192.0.2.{n}") for n in (2, 3, 4)]
        assert writes == [1] and not any(d.called for d in burst)  # waits for the interval
        clock.advance(MIN_WRITE_INTERVAL)
        assert writes == [1, 3] and all(d.called for d in burst)  # then one write for all
        recorder.record("bob@example.com", "smtp", "192.0.2.5")
        recorder.record("ghost@example.com", "smtp", "192.0.2.6")  # deleted meanwhile: ignored
        left = recorder.take()  # shutdown: what is not written yet
        assert [record[:3] for record in left] == [
            ("bob@example.com", "smtp", "192.0.2.5"),
            ("ghost@example.com", "smtp", "192.0.2.6"),
        ]
        directory.record_logins(left)
        clock.advance(10 * MIN_WRITE_INTERVAL)
        assert writes == [1, 3]  # nothing written twice
        assert [ip for _, ip, _ in directory.logins("bob@example.com")] == [
            "192.0.2.5",
            "192.0.2.4",
            "192.0.2.3",
            "192.0.2.2",
            "192.0.2.1",
        ]
