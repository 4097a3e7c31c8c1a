"""The server's own log file (L1, L2): the same lines as twistd's log, info and above."""

from __future__ import annotations

import threading
from pathlib import Path

from twisted.logger import Logger, LogPublisher, formatEventAsClassicLogText, globalLogPublisher

from mailmax.core.logfile import MailLogFile


def emit_examples(log: Logger) -> None:
    """One event of every shape the server logs."""
    log.info(
        "accepted {queue_id} from <{sender}> to {recipients} size {size} session {session_id}",
        queue_id="0660aa00bb11cc22dd",
        sender="alice@example.org",
        recipients="bob@example.com",
        size=4096,
        session_id="s1",
    )
    log.debug("not written: below info")
    log.warn("multi\nline {n:>4} {text!r}", n=7, text="quoted")
    log.info("a call {value()} and {obj.attr}", value=lambda: 42, obj=type("O", (), {"attr": 1}))
    log.error("missing {field}")
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        log.failure("delivery {queue_id} failed", queue_id="q1")


def test_log_file_lines_are_twistds_lines(tmp_path: Path) -> None:
    """L1: every info-or-higher event is one line (continuations indented) exactly as twistd
    writes it, tracebacks included; debug events are left out."""
    expected: list[str] = []

    def classic(event: dict) -> None:
        if event["log_level"].name != "debug":
            expected.append(formatEventAsClassicLogText(event) or "")

    logfile = MailLogFile(tmp_path / "logs" / "mailmax.log")
    logfile.start()
    publisher = LogPublisher()
    publisher.addObserver(classic)
    publisher.addObserver(globalLogPublisher)
    try:
        emit_examples(Logger(namespace="mailmax.test", observer=publisher))
    finally:
        logfile.stop()
    text = (tmp_path / "logs" / "mailmax.log").read_text()
    assert text == "".join(expected)
    assert "[mailmax.test#info] accepted 0660aa00bb11cc22dd from <alice@example.org>" in text
    assert "a call 42 and 1" in text and "not written" not in text
    assert "ZeroDivisionError: boom" in text


def test_log_file_takes_lines_from_threads_whole(tmp_path: Path) -> None:
    """L1: events logged by several threads at once come out as whole lines."""
    logfile = MailLogFile(tmp_path / "mailmax.log")
    logfile.start()
    log = Logger(namespace="mailmax.test")

    def work(n: int) -> None:
        for i in range(200):
            log.info("thread {n} line {i} {pad}", n=n, i=i, pad="x" * 200)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        logfile.stop()
    lines = [
        line for line in (tmp_path / "mailmax.log").read_text().splitlines() if "thread" in line
    ]
    assert len(lines) == 800
    assert all(line.endswith("x" * 200) and "[mailmax.test#info] thread" in line for line in lines)


def test_per_message_lines_go_to_the_log_file_only_while_it_is_open(tmp_path: Path) -> None:
    """L1: a mail_logger line is written once, to the log file, not to twistd's log; other
    events go to both; without a log file the mail lines go to twistd's log."""
    from mailmax.core.logfile import mail_logger

    seen: list[str] = []

    def twistd_log(event: dict) -> None:
        if event.get("log_namespace", "").startswith("mailmax.test"):
            seen.append(event["log_format"])

    globalLogPublisher.addObserver(twistd_log)
    mail, other = mail_logger("mailmax.test.mail"), Logger(namespace="mailmax.test.other")
    logfile = MailLogFile(tmp_path / "mailmax.log")
    try:
        logfile.start()
        mail.info("accepted {queue_id}", queue_id="q1")
        other.error("something broke")
        logfile.stop()
        mail.info("accepted {queue_id}", queue_id="q2")
    finally:
        globalLogPublisher.removeObserver(twistd_log)
    text = (tmp_path / "mailmax.log").read_text()
    assert text.count("accepted q1") == 1 and "something broke" in text
    assert "accepted q2" not in text
    assert seen == ["something broke", "accepted {queue_id}"]
