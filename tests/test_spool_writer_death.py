"""When the spool writer process dies under load (Q1, Q2): a message answered 451 is never
delivered, not even after a restart; one answered 250 is delivered exactly once and at once
(a new writer takes over the deliveries in flight); a restart retries local deliveries that
failed for a local reason without waiting for the retry interval."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.server import DOMAIN, MailMaxServer

ALICE = f"alice@{DOMAIN}"
#: Long enough that a delivery deferred by the writer's death would not come back in the test.
SLOW_RETRY = {"scan_interval": 1.0, "retry_minutes": 60.0}


def writer_pids(server: MailMaxServer) -> list[int]:
    """The spool writer processes among the server's children."""
    assert server.proc is not None
    pids = []
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"mailmax.core.spool.writer" in cmdline:
                pids.append(int(pid))
    return pids


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def subjects(server: MailMaxServer) -> Counter[str]:
    """How many copies of each test subject alice's INBOX holds."""
    found: Counter[str] = Counter()
    for message in server.messages(ALICE):
        for line in message.split(b"\r\n"):
            if line.startswith(b"Subject: load-"):
                found[line[9:].decode()] += 1
    return found


def send_under_load(
    server: MailMaxServer, clients: int, per_client: int, kills: int
) -> tuple[set[str], set[str]]:
    """``clients`` SMTP clients each send ``per_client`` messages of 60 KB while the writer
    process is killed ``kills`` times; returns the subjects answered 250 and those answered
    with a 4xx at the end of DATA."""
    accepted: set[str] = set()
    refused: set[str] = set()
    errors: list[str] = []
    lock = threading.Lock()
    body = ("x" * 76 + "\r\n") * 800

    def client(number: int) -> None:
        smtp = server.smtp(timeout=30)
        smtp.ehlo()
        try:
            for index in range(per_client):
                subject = f"load-{number}-{index}"
                assert smtp.mail(f"sender{number}@outside.example")[0] == 250
                assert smtp.rcpt(ALICE)[0] == 250
                try:
                    code, reply = smtp.data(f"Subject: {subject}\r\n\r\n{body}".encode())
                except smtplib.SMTPDataError as exc:
                    code, reply = exc.smtp_code, exc.smtp_error
                with lock:
                    (accepted if code == 250 else refused).add(subject)
                    if code != 250:
                        errors.append(f"{code} {reply!r}")
        finally:
            smtp.quit()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for _ in range(kills):
        seen = len(accepted)
        wait_until(lambda n=seen: len(accepted) >= n + 5, 30, "messages accepted")
        pids = writer_pids(server)
        assert len(pids) == 1, pids
        time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda p=pids[0]: writer_pids(server) not in ([], [p]), 10, "a new writer")
    for thread in threads:
        thread.join(120)
    assert all(reply.startswith("451 ") for reply in errors), errors
    return accepted, refused


def test_writer_killed_mid_batch_never_delivers_a_refused_message(
    mailmax_factory: Callable[..., MailMaxServer],
) -> None:
    """Q1: killing the writer under concurrent SMTP load, again and again: every message
    answered 250 lands exactly once without waiting for a retry, none answered 451 ever does
    (also after the server restarts)."""
    server = mailmax_factory(queue=SLOW_RETRY)
    accepted, refused = send_under_load(server, clients=8, per_client=25, kills=4)
    assert len(accepted) + len(refused) == 8 * 25
    wait_until(lambda: set(subjects(server)) >= accepted, 30, "every accepted message")
    assert "starting a new one" in server.output() + server.log_text()
    copies = subjects(server)
    assert not set(copies) & refused, sorted(set(copies) & refused)
    assert set(copies) == accepted
    assert all(count == 1 for count in copies.values()), copies.most_common(3)
    server.restart()
    time.sleep(2.5)  # two queue scans: anything left in the queue would be delivered now
    copies = subjects(server)
    assert set(copies) == accepted
    assert all(count == 1 for count in copies.values()), copies.most_common(3)
    assert list((server.data_dir / "queue" / "env").glob("*.json")) == []


def test_restart_retries_local_deliveries_deferred_by_a_local_failure(
    mailmax_factory: Callable[..., MailMaxServer],
) -> None:
    """Q2: a local delivery that failed for a local reason (the mailbox could not be
    written) waits for its retry interval while the server runs, and is tried again as soon
    as the server restarts."""
    server = mailmax_factory(queue=SLOW_RETRY)
    mailbox = server.maildir(ALICE)
    mailbox.parent.mkdir(parents=True, exist_ok=True)
    if mailbox.is_dir():
        os.rename(mailbox, mailbox.with_name("alice.saved"))
    mailbox.write_text("not a directory")  # the Maildir cannot be created
    with server.smtp() as smtp:
        smtp.sendmail("someone@outside.example", [ALICE], b"Subject: load-waiting\r\n\r\nhi\r\n")
    wait_until(lambda: "result=deferred" in server.log_text() + server.output(), 10, "a deferral")
    mailbox.unlink()
    time.sleep(2.5)  # two queue scans: still waiting for its retry interval
    assert subjects(server) == Counter()
    server.restart()
    wait_until(lambda: subjects(server) == Counter({"load-waiting": 1}), 10, "the retry")


def test_settling_keeps_complete_messages_and_removes_the_rest(tmp_path: Path) -> None:
    """Q1: what a dead writer left: a message with both files in place is kept (it will be
    answered 250); one cut short anywhere is removed with every file of it (answered 451)."""
    from mailmax.core.spool.files import settle_unanswered

    for sub in ("msg", "env", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "msg" / "complete").write_bytes(b"m")
    (tmp_path / "env" / "complete.json").write_bytes(b"{}")
    (tmp_path / "msg" / "halfway").write_bytes(b"m")  # renamed, its envelope not yet
    (tmp_path / "tmp" / "halfway.env").write_bytes(b"{}")
    (tmp_path / "tmp" / "written.msg").write_bytes(b"m")  # still in tmp/
    (tmp_path / "tmp" / "written.env").write_bytes(b"{}")
    results = settle_unanswered(
        str(tmp_path), ["complete", "halfway", "written", "none"], fsync=True
    )
    assert results["complete"] is None
    assert all(isinstance(results[i], OSError) for i in ("halfway", "written", "none"))
    assert sorted(os.listdir(tmp_path / "msg")) == ["complete"]
    assert sorted(os.listdir(tmp_path / "env")) == ["complete.json"]
    assert os.listdir(tmp_path / "tmp") == []
