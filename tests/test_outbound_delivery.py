"""Remote delivery end to end on loopback (S4, Q2-Q6, Q10, Q11): MX look-up in a real DNS
server, delivery to real receiving SMTP servers, retries, bounces and restarts."""

from __future__ import annotations

import time
from pathlib import Path

from mailmax.core.outbound.client import CHUNK_SIZE
from mailmax.core.outbound.route import Engine, Route
from tests.fixtures.ports import free_port
from tests.fixtures.smtp_sink import smtp_sink
from tests.test_outbound_support import (
    OUR_NAME,
    Outbound,
    expected_message,
    route_plugin,
)
from tests.test_queue_support import QueueHarness, parse_dsn


def deferred_attempts(queue: QueueHarness, queue_id: str, attempts: int = 1) -> object:
    """Wait until the first recipient of ``queue_id`` has failed ``attempts`` times."""
    return queue.wait_for(
        lambda: (e := queue.spool.load(queue_id)).recipients[0].attempts >= attempts and e,
        f"{attempts} failed attempt(s)",
    )


def test_direct_mx_delivery_one_transaction_per_destination(
    outbound: Outbound, tmp_path: Path
) -> None:
    """S4: remote recipients of one domain go to its MX host in one transaction with
    MAIL FROM, EHLO name and SIZE; the message arrives byte for byte; local ones are stored."""
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue()
        queue_id = queue.submit(["bob@example.org", "bob@example.com", "carol@example.org"])
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["bob@example.org", "carol@example.org"]
        assert tx["mail_from"] == "alice@example.com" and tx["helo"] == OUR_NAME
        assert tx["mail_params"] == f"SIZE={len(expected_message())}"
        assert sink.message(tx) == expected_message()
        queue.wait_mail("bob@example.com")
        queue.wait_queue_empty()
        line = f"delivery {queue_id} to=bob@example.org relay=mx.example.org[127.0.0.1]"
        assert any(line in entry and "result=delivered" in entry for entry in queue.log_lines())


def test_mx_preference_order_and_fallback(outbound: Outbound, tmp_path: Path) -> None:
    """S4: the most preferred MX gets the mail; when it is down the next one does."""
    with (
        smtp_sink(tmp_path / "mx1", port=outbound.port, address="127.0.0.2") as mx1,
        smtp_sink(tmp_path / "mx2", port=outbound.port) as mx2,
    ):
        queue = outbound.queue()
        queue.submit(["x@pref.test"])
        mx1.wait_for(1)
        queue.wait_queue_empty()
        mx1.stop()
        queue.submit(["y@pref.test"])
        (tx,) = mx2.wait_for(1)
        assert tx["rcpts"] == ["y@pref.test"]
        assert len(mx1.transactions()) == 1
        queue.wait_queue_empty()


def test_temporary_failure_is_retried_until_accepted(outbound: Outbound, tmp_path: Path) -> None:
    """Q2: a 4xx for a recipient defers it (attempts, reply and host recorded); the retry
    delivers it; the sender hears nothing."""
    rcpt = {"bob@example.org": ["451 4.3.0 Try again later", "250 2.1.5 Ok"]}
    with smtp_sink(tmp_path / "sink", port=outbound.port, rcpt=rcpt) as sink:
        queue = outbound.queue(retry_minutes=0.01)
        queue_id = queue.submit(["bob@example.org"])
        envelope = deferred_attempts(queue, queue_id)
        bob = envelope.recipients[0]  # type: ignore[attr-defined]
        assert bob.state == "deferred" and bob.next_attempt > time.time() - 1
        assert bob.last_error.startswith("451 4.3.0 Try again later (at mx.example.org[")
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["bob@example.org"]
        queue.wait_queue_empty()
        assert queue.messages("alice@example.com") == []


def test_permanent_failure_bounces_with_a_dsn(outbound: Outbound, tmp_path: Path) -> None:
    """Q4: a 5xx for one recipient bounces it at once with an RFC 3464 report from the null
    sender (status, remote MTA, diagnostic, the original headers); the others get the mail."""
    rcpt = {"gone@example.org": "550 5.1.1 No such user here"}
    with smtp_sink(tmp_path / "sink", port=outbound.port, rcpt=rcpt) as sink:
        queue = outbound.queue()
        queue.submit(["gone@example.org", "bob@example.org"])
        (tx,) = sink.wait_for(1)
        assert tx["rcpts"] == ["bob@example.org"]
        (dsn,) = queue.wait_mail("alice@example.com")
        assert dsn.startswith(b"Return-Path: <>\r\n")
        msg, (gone,) = parse_dsn(dsn)
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        assert gone["Final-Recipient"] == "rfc822; gone@example.org"
        assert (gone["Action"], gone["Status"]) == ("failed", "5.1.1")
        assert gone["Remote-MTA"] == "dns; mx.example.org"
        assert "550 5.1.1 No such user here" in gone["Diagnostic-Code"]
        returned = [p for p in msg.iter_parts() if p.get_content_type() == "message/rfc822"]
        assert returned and returned[0].get_payload()[0]["Subject"] == "test"
        queue.wait_queue_empty()


def test_bounce_copy_goes_to_the_postmaster(outbound: Outbound, tmp_path: Path) -> None:
    """Q4: with bounce_copy_to_postmaster, the postmaster gets the same DSN as the sender."""
    rcpt = {"gone@example.org": "550 5.1.1 No such user here"}
    with smtp_sink(tmp_path / "sink", port=outbound.port, rcpt=rcpt):
        queue = outbound.queue(bounce_copy_to_postmaster=True, postmaster="carol@example.com")
        queue.submit(["gone@example.org"])
        (dsn,) = queue.wait_mail("alice@example.com")
        (copy,) = queue.wait_mail("carol@example.com")
        assert dsn.split(b"\r\n", 2)[2] == copy.split(b"\r\n", 2)[2]
        assert parse_dsn(copy)[1][0]["Status"] == "5.1.1"
        queue.wait_queue_empty()


def test_soft_error_queue_warns_the_sender_then_bounces(outbound: Outbound, tmp_path: Path) -> None:
    """Q3: after the retries the message enters the soft-error queue and the sender gets one
    'delayed' warning; after the re-sends it bounces with 4.4.7."""
    rcpt = {"busy@example.org": "452 4.2.2 Mailbox busy"}
    with smtp_sink(tmp_path / "sink", port=outbound.port, rcpt=rcpt):
        queue = outbound.queue(
            retry_minutes=0.005, max_retries=1, soft_retry_hours=0.0002, soft_max_resends=1
        )
        queue.submit(["busy@example.org"])
        warning, failure = queue.wait_mail("alice@example.com", 2)
        msg, (busy,) = parse_dsn(warning)
        assert msg["Subject"] == "Delayed Mail (still being retried)"
        assert (busy["Action"], busy["Status"]) == ("delayed", "4.2.2")
        assert busy["Will-Retry-Until"]
        msg, (busy,) = parse_dsn(failure)
        assert (busy["Action"], busy["Status"]) == ("failed", "4.4.7")
        assert "after 3 attempts" in busy["Diagnostic-Code"]
        assert "452 4.2.2 Mailbox busy" in busy["Diagnostic-Code"]
        queue.wait_queue_empty()


def test_dns_answers_decide_bounce_or_delivery(outbound: Outbound, tmp_path: Path) -> None:
    """S4/Q6: no such domain -> 5.1.2, a null MX -> 5.1.10 (both bounce at once); a domain
    without MX but with an address is its own mail host; an AAAA-only MX is reached over
    IPv6."""
    with (
        smtp_sink(tmp_path / "v4", port=outbound.port) as v4,
        smtp_sink(tmp_path / "v6", port=outbound.port, address="::1") as v6,
    ):
        queue = outbound.queue()
        queue.submit(["a@nowhere.example.org", "b@nullmx.test"])
        (dsn,) = queue.wait_mail("alice@example.com")
        statuses = {r["Final-Recipient"]: r["Status"] for r in parse_dsn(dsn)[1]}
        assert statuses == {
            "rfc822; a@nowhere.example.org": "5.1.2",
            "rfc822; b@nullmx.test": "5.1.10",
        }
        queue.submit(["c@implicit.test", "d@v6.test"])
        assert v4.wait_for(1)[0]["rcpts"] == ["c@implicit.test"]
        assert v6.wait_for(1)[0]["rcpts"] == ["d@v6.test"]
        queue.wait_queue_empty()


def test_unreachable_dns_defers(outbound: Outbound, tmp_path: Path) -> None:
    """Q6: DNS servers that do not answer within dns_timeout defer the mail (4.4.3)."""
    queue = outbound.queue(dns_servers=[f"127.0.0.1:{free_port()}"], dns_timeout=0.5)
    queue_id = queue.submit(["bob@example.org"])
    envelope = deferred_attempts(queue, queue_id)
    error = envelope.recipients[0].last_error  # type: ignore[attr-defined]
    assert error.startswith("451 4.4.3 DNS look-up of the MX of example.org failed")
    assert queue.messages("alice@example.com") == []


def test_mail_that_would_loop_back_bounces(outbound: Outbound, tmp_path: Path) -> None:
    """S4: when this server is the best MX of a domain, its mail bounces (5.4.6) instead of
    going to a less preferred host."""
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue()
        queue.submit(["x@loop.test"])
        (dsn,) = queue.wait_mail("alice@example.com")
        assert parse_dsn(dsn)[1][0]["Status"] == "5.4.6"
        assert sink.transactions() == []


def test_fixed_host_route_needs_no_mx(outbound: Outbound, tmp_path: Path) -> None:
    """Q7/Q8: a route to a fixed host (a smart host, a relay-to-host address) delivers there
    without looking up the destination's MX. (STARTTLS and AUTH with a smart host are tested
    end to end in test_outbound_e2e.py: Twisted's TLS layer needs the global reactor.)"""
    with smtp_sink(tmp_path / "isp") as isp:
        engine = Engine("isp", "127.0.0.1", isp.port, tls="none")
        queue = outbound.queue()
        queue.plugin_set = route_plugin(lambda domain: Route((engine,), name="smart host"))
        queue.submit(["someone@unknown-domain.test", "other@example.org"])
        (tx,) = isp.wait_for(1)
        assert tx["rcpts"] == ["someone@unknown-domain.test", "other@example.org"]
        queue.wait_queue_empty()


def test_credentials_are_not_sent_without_tls(outbound: Outbound, tmp_path: Path) -> None:
    """Q7: a smart host that offers no STARTTLS never sees the credentials; mail waits."""
    with smtp_sink(tmp_path / "isp", auth={"relay": "s3cret"}) as isp:
        engine = Engine("isp", host="127.0.0.1", port=isp.port, username="relay", password="x")
        queue = outbound.queue()
        queue.plugin_set = route_plugin(lambda domain: Route((engine,)))
        queue_id = queue.submit(["someone@elsewhere.test"])
        envelope = deferred_attempts(queue, queue_id)
        assert "credentials are not sent" in envelope.recipients[0].last_error  # type: ignore[attr-defined]
        assert not any(c.startswith("AUTH") for s in isp.sessions() for c in s["commands"])


def test_required_tls_and_response_injection(outbound: Outbound, tmp_path: Path) -> None:
    """S4: a server injecting a reply into the STARTTLS exchange is dropped before MAIL;
    a destination requiring TLS is not sent mail in clear text."""
    with smtp_sink(
        tmp_path / "sink",
        port=outbound.port,
        starttls=True,
        inject_after_starttls="250 2.0.0 x\r\n",
    ) as sink:
        queue = outbound.queue()
        queue_id = queue.submit(["bob@example.org"])
        envelope = deferred_attempts(queue, queue_id)
        assert "response injection" in envelope.recipients[0].last_error  # type: ignore[attr-defined]
        sink.configure(starttls=False, inject_after_starttls="")
        queue.plugin_set = route_plugin(lambda domain: Route((Engine(tls="encrypt"),)))
        queue.rt.call(queue.runner.wake)
        envelope = deferred_attempts(queue, queue_id, 2)
        assert "does not offer STARTTLS" in envelope.recipients[0].last_error  # type: ignore[attr-defined]
        assert not any(c.startswith("MAIL") for s in sink.sessions() for c in s["commands"])


def test_next_delivery_engine_after_a_failure(outbound: Outbound, tmp_path: Path) -> None:
    """Q11: the engines of a route are tried in order; when the first fails the next one
    delivers in the same attempt."""
    with smtp_sink(tmp_path / "second") as second:
        engines = (
            Engine("first", host="127.0.0.2", port=second.port),
            Engine("second", host="127.0.0.1", port=second.port),
        )
        queue = outbound.queue()
        queue.plugin_set = route_plugin(lambda domain: Route(engines))
        queue_id = queue.submit(["bob@example.org"])
        second.wait_for(1)
        queue.wait_queue_empty()
        lines = queue.log_lines()
        assert any("Cannot connect to [127.0.0.2]" in line for line in lines)
        assert any(f"delivery {queue_id}" in x and "result=delivered" in x for x in lines)


def test_backup_mx_waits_for_the_primary(outbound: Outbound, tmp_path: Path) -> None:
    """Q10: a backup route sends only to MX hosts preferred over this server, keeps retrying
    without warning or bounce while the primary is down, and delivers once it is up."""
    backup = Route((Engine(below_preference=20),), patient_days=1, transit=True, name="backup")
    with smtp_sink(tmp_path / "tertiary", port=outbound.port) as tertiary:
        queue = outbound.queue(retry_minutes=0.005, max_retries=0, soft_max_resends=0)
        queue.plugin_set = route_plugin(lambda domain: backup if domain == "backup.test" else None)
        queue_id = queue.submit(["user@backup.test"])
        deferred_attempts(queue, queue_id, 3)
        assert queue.messages("alice@example.com") == []
        with smtp_sink(tmp_path / "primary", port=outbound.port, address="127.0.0.2") as primary:
            (tx,) = primary.wait_for(1)
            assert tx["rcpts"] == ["user@backup.test"]
            queue.wait_queue_empty()
        assert tertiary.transactions() == []
        assert queue.messages("alice@example.com") == []


def test_large_message_is_byte_exact_with_one_mail_from(outbound: Outbound, tmp_path: Path) -> None:
    """S4: a message of many chunks, with a '.'-line, a split CRLF and a lone '.' line on
    every chunk boundary, arrives byte for byte in one transaction with one MAIL FROM."""
    variants = [
        (b"\r\n", b".\r\n"),  # a lone '.' line right at the boundary
        (b"\r\n", b".dot at the boundary\r\n"),  # a '.'-line right at the boundary
        (b"\r", b"\n.after a split line end\r\n"),  # CR | LF, then a '.'-line
        (b"\r\n.", b"\r\n"),  # a lone '.' line cut in two
    ]
    parts: list[bytes] = []
    size = len(expected_message(body=b""))
    for k in range(1, 10):
        tail, head = variants[k % 4]
        filler = b"z" * (k * CHUNK_SIZE - size - len(tail))
        parts += [filler, tail, head]
        size += len(filler) + len(tail) + len(head)
    body = b"".join(parts) + b"last line\r\n"
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue()
        queue.submit(["big@example.org"], body=body)
        (tx,) = sink.wait_for(1)
        assert sink.message(tx) == expected_message(body=body)
        queue.wait_queue_empty()
        sink.stop()
        commands = [c for s in sink.sessions() for c in s["commands"]]
        assert [c for c in commands if c.startswith("MAIL")] == [
            f"MAIL FROM:<alice@example.com> SIZE={len(expected_message(body=body))}"
        ]


def test_connection_reuse_pipelining_and_destination_limit(
    outbound: Outbound, tmp_path: Path
) -> None:
    """Q2: never more sessions to a destination than max_per_destination; a connection
    carries message after message; MAIL, RCPT and DATA travel together (PIPELINING)."""
    with smtp_sink(tmp_path / "sink", port=outbound.port, reply_delay=0.02) as sink:
        queue = outbound.queue(max_per_destination=2, reuse_seconds=5)
        for n in range(8):
            queue.submit([f"user{n}@example.org"])
        transactions = sink.wait_for(8)
        queue.wait_queue_empty()
        assert sink.most_connections() <= 2
        sessions = {tx["session"] for tx in transactions}
        assert len(sessions) <= 2
        queue.rt.call(queue.runner.stopService)  # closes the idle connections
        queue.wait_for(lambda: len(sink.sessions()) >= len(sessions), "the sessions to end")
        for session in sink.sessions():
            commands, chunks = session["commands"], session["chunks"]
            for index, command in enumerate(commands):
                if command.startswith("MAIL"):
                    assert commands[index + 1].startswith("RCPT")
                    assert chunks[index] == chunks[index + 1] == chunks[index + 2]


def test_restart_resumes_remote_delivery_from_disk(outbound: Outbound, tmp_path: Path) -> None:
    """Q1: a recipient's state survives a restart: attempts, next attempt and last error are
    on disk, and the new runner delivers it exactly once."""
    queue = outbound.queue(retry_minutes=0.02)
    queue_id = queue.submit(["bob@example.org"])
    deferred_attempts(queue, queue_id)
    queue.rt.call(queue.runner.stopService)
    saved = queue.spool.load(queue_id).recipients[0]
    assert saved.state == "deferred" and saved.attempts >= 1 and saved.next_attempt > 0
    assert saved.last_error.startswith("451 4.4.1 Cannot connect to mx.example.org")
    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue.runner = queue.new_runner()
        queue.rt.call(queue.runner.startService)
        (tx,) = sink.wait_for(1)
        queue.wait_queue_empty()
        assert tx["rcpts"] == ["bob@example.org"] and len(sink.wait_for(1)) == 1


def test_messages_to_one_domain_share_one_directory_lookup(
    outbound: Outbound, tmp_path: Path
) -> None:
    """S4: many messages to one remote domain at once ask the directory about that domain
    once (the others wait for that answer), not once per message; all are delivered."""
    import threading

    with smtp_sink(tmp_path / "sink", port=outbound.port) as sink:
        queue = outbound.queue(start=False)
        real_get_domain = queue.directory.get_domain
        gate = threading.Event()
        asked: list[str] = []

        def get_domain(name: str) -> object:
            if name == "example.org":
                asked.append(name)
                assert gate.wait(10)
            return real_get_domain(name)

        queue.directory.get_domain = get_domain  # type: ignore[method-assign]
        queue.start(runner=False)
        for _ in range(12):
            queue.submit(["bob@example.org"])
        queue.rt.call(queue.runner.startService)
        waiting = queue.runner.outbound._record_waiters
        queue.wait_for(lambda: len(waiting.get("example.org", ())) == 11, "11 waiting messages")
        gate.set()
        sink.wait_for(12)
        queue.wait_queue_empty()
    assert asked == ["example.org"]
