"""SMTP session basics over an in-process transport: greeting, EHLO/HELO, QUIT (S1, S7)."""

from __future__ import annotations

import re
from typing import Any

from tests.test_smtp_harness import World, close_worlds, plugin_set  # noqa: F401


def test_greeting_names_the_host() -> None:
    """S1: the greeting is ``220 <hostname> ESMTP MailMax``."""
    client = World().connect()
    assert client.greeting == "220 mx.example.test ESMTP MailMax\r\n"


def test_greeting_uses_the_listener_display_name() -> None:
    """S7: a listener's display name replaces the hostname in the greeting."""
    client = World(display_name="mail.customer.test").connect()
    assert client.greeting.startswith("220 mail.customer.test ESMTP MailMax")


def test_ehlo_lists_exactly_the_implemented_extensions() -> None:
    """S1: EHLO advertises SIZE, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS; no AUTH
    before TLS, no DSN, no CHUNKING."""
    client = World(smtp={"max_message_size": 100000}).connect()
    reply = client.cmd("EHLO client.example")
    assert reply.split("\r\n")[:-1] == [
        "250-mx.example.test",
        "250-SIZE 100000",
        "250-PIPELINING",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250 STARTTLS",
    ]


def test_helo_and_quit() -> None:
    """S1: HELO is answered with the host name; QUIT says 221 and closes."""
    client = World().connect()
    assert client.cmd("HELO client.example") == "250 mx.example.test\r\n"
    assert client.cmd("QUIT") == "221 2.0.0 Bye\r\n"
    assert client.closed


# ---------------------------------------------------------------------- STARTTLS
def test_starttls_discards_pipelined_commands_and_resets_the_session() -> None:
    """S1 (Twisted's STARTTLS injection): input after STARTTLS is dropped; HELO must be repeated."""
    world = World()
    client = world.connect()
    client.cmd("EHLO c")
    client.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    assert client.transport.before_tls == b"220 2.0.0 Ready to start TLS\r\n"
    assert client.transport.tls_options is world.factory.tls_options
    assert client.read() == ""
    assert client.proto.session.tls
    assert client.cmd("MAIL FROM:<a@remote.test>").startswith("503 5.5.1")
    assert client.cmd("EHLO c").startswith("250-")
    assert client.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")


def test_starttls_resets_a_transaction() -> None:
    """S1: a transaction started before STARTTLS is gone after it."""
    client = World().connect()
    client.cmd("EHLO c")
    client.cmd("MAIL FROM:<a@remote.test>")
    client.cmd("STARTTLS")
    client.cmd("EHLO c")
    assert client.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")


def test_starttls_twice_or_on_smtps_or_without_certificate() -> None:
    """S1: STARTTLS under TLS is 503; without a certificate it is neither offered nor done."""
    client = World().connect()
    client.cmd("EHLO c")
    client.cmd("STARTTLS")
    assert client.cmd("STARTTLS").startswith("503 5.5.1")
    smtps = World().connect(implicit_tls=True)
    assert "STARTTLS" not in smtps.cmd("EHLO c")
    assert smtps.cmd("STARTTLS").startswith("503 5.5.1")
    plain = World(tls=False).connect()
    assert "STARTTLS" not in plain.cmd("EHLO c")
    assert plain.cmd("STARTTLS").startswith("502 5.5.1")
    assert plain.cmd("STARTTLS now").startswith("501 5.5.4")


# ---------------------------------------------------------------------- limits and errors
def test_idle_client_times_out() -> None:
    """P6: an idle client gets 421 4.4.2 after client_timeout; activity restarts the clock."""
    world = World(smtp={"client_timeout": 30})
    client = world.connect()
    world.clock.advance(29)
    client.cmd("NOOP")
    world.clock.advance(29)
    assert not client.closed
    world.clock.advance(2)
    assert client.read() == "421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
    assert client.closed


def test_timeout_waits_while_the_server_is_busy() -> None:
    """P6: a slow spool is not the client's idleness."""
    world = World(smtp={"client_timeout": 30})
    client = world.connect()
    client.send_mail("a@remote.test", ["alice@example.test"], b"hi", settle=False)
    world.clock.advance(45)
    assert not client.closed
    world.settle()
    assert client.replies()[-1].startswith("250 2.0.0")


def test_too_many_bad_commands_close_the_session() -> None:
    """P6: max_errors bad commands get 421 and the connection is closed."""
    client = World(smtp={"max_errors": 3}).connect()
    client.send(b"FOO\r\nBAR\r\nMAIL\r\nNOOP\r\n")
    assert client.replies() == [
        "500 5.5.2 Command unrecognized",
        "500 5.5.2 Command unrecognized",
        "503 5.5.1 Send HELO or EHLO first",
        "421 4.7.0 Too many errors, closing connection",
    ]
    assert client.closed


def test_over_long_command_line_is_discarded_with_bounded_memory() -> None:
    """P6: a command line over max_command_line is 500 5.5.2; its rest is dropped."""
    world = World(smtp={"max_command_line": 512})
    client = world.connect()
    client.send(b"NOOP " + b"x" * 600)
    assert client.read() == "500 5.5.2 Line too long\r\n"
    for _ in range(100):
        client.send(b"y" * 10000)
        assert len(client.proto._inbox) <= 512
    client.send(b"zzz\r\nNOOP\r\n")
    assert client.replies() == ["250 2.0.0 Ok"]
    client.send(b"NOOP " + b"x" * 600 + b"\r\nNOOP\r\n")
    assert client.replies() == ["500 5.5.2 Line too long", "250 2.0.0 Ok"]


def test_vrfy_off_and_on() -> None:
    """P2: VRFY says 252 unless allow_vrfy; then it answers for local users."""
    client = World().connect()
    assert client.cmd("VRFY alice") == (
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    )
    open_client = World(smtp={"allow_vrfy": True}).connect()
    assert open_client.cmd("VRFY alice") == "250 2.1.5 <alice@example.test>\r\n"
    assert open_client.cmd("VRFY <bob@example.test>") == "250 2.1.5 <bob@example.test>\r\n"
    assert open_client.cmd("VRFY nobody").startswith("550 5.1.1")
    assert open_client.cmd("VRFY x@remote.test").startswith("252 2.5.2")
    assert open_client.cmd("VRFY").startswith("501 5.5.4")


def test_rset_noop_help_expn_and_unknown() -> None:
    """S1: the small commands, each with an enhanced status code."""
    client = World().connect()
    client.cmd("EHLO c")
    client.cmd("MAIL FROM:<a@remote.test>")
    assert client.cmd("RSET") == "250 2.0.0 Ok\r\n"
    assert client.cmd("RCPT TO:<alice@example.test>").startswith("503 5.5.1")
    assert client.cmd("NOOP anything") == "250 2.0.0 Ok\r\n"
    assert client.cmd("HELP").startswith("214 2.0.0 ")
    assert client.cmd("EXPN staff").startswith("502 5.5.1")
    assert client.cmd("BDAT 10 LAST").startswith("500 5.5.2")
    assert client.cmd("HELO").startswith("501 5.5.4")
    assert client.cmd("MAIL FROM:<a@b.test>").startswith("250")  # EHLO still holds


def test_mail_needs_helo_and_params_need_ehlo() -> None:
    """S1: MAIL before HELO is 503; ESMTP parameters after HELO are 555; unknown ones 555."""
    client = World().connect()
    assert client.cmd("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
    client.cmd("HELO c")
    assert client.cmd("MAIL FROM:<a@b.test> SIZE=10").startswith("555 5.5.4")
    client.cmd("EHLO c")
    assert client.cmd("MAIL FROM:<a@b.test> FOO=1").startswith("555 5.5.4")
    assert client.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME").startswith("501 5.5.4")
    assert client.cmd("MAIL FROM:<a@b.test> BODY=8BITMIME AUTH=<>").startswith("250")
    assert client.cmd("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
    assert client.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER").startswith("555 5.5.4")


def test_http_requests_are_dropped() -> None:
    """S1: an HTTP request (cross-protocol attack) closes the session."""
    client = World().connect()
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\nMAIL FROM:<a@b>\r\n")
    assert client.read() == "421 4.7.0 This is an SMTP server, closing\r\n"
    assert client.closed


def test_every_reply_has_an_enhanced_status_code() -> None:
    """S1: all replies but the greeting, EHLO/HELO, 354 and 334 carry an enhanced code."""
    import re

    world = World(smtp={"allow_vrfy": True})
    client = world.connect()
    script = [
        "EHLO c", "NOOP", "HELP", "VRFY alice", "VRFY nobody", "MAIL FROM:<>", "RCPT TO:<x>",
        "RCPT TO:<nobody@example.test>", "RCPT TO:<x@remote.test>", "RCPT TO:<alice@example.test>",
        "DATA", "hi\r\n.", "RSET", "FOO", "AUTH PLAIN", "STARTTLS", "QUIT",
    ]  # fmt: skip
    for line in script:
        client.send(line.encode() + b"\r\n")
    replies = client.replies() + client.transport.before_tls.decode().split("\r\n")[:1]
    exempt = ("250-", "250 mx", "354 ")
    for reply in replies:
        if reply.startswith(exempt):
            continue
        assert re.match(r"\d{3} [245]\.\d{1,3}\.\d{1,3} ", reply.split("\n")[-1]), reply


# ---------------------------------------------------------------------- pipelining
class SlowDirectory:
    """Wraps a directory so each look-up answers after a delay (the later, the faster)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.inner = world.directory
        self.sql = world.sql
        self.delay = 10.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def lookup_recipient(self, address: str) -> Any:
        from twisted.internet import task

        self.delay -= 1
        answer = self.sql.lookup_recipient(address)
        return task.deferLater(self.world.clock, self.delay, lambda: answer)


def test_pipelined_replies_stay_in_order_with_slow_lookups() -> None:
    """S1: with asynchronous look-ups, replies come in command order, one command at a time."""
    world = World()
    world.factory.directory = SlowDirectory(world)
    client = world.connect()
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
        settle=False,
    )
    for _ in range(50):
        world.clock.advance(1)
    world.settle()
    replies = client.replies()
    assert [r[:9] for r in replies[1:]] == [
        "250 2.1.0",
        "250 2.1.5",
        "550 5.1.1",
        "250 2.1.5",
        "554 5.7.1",
        "354 End d",
        "250 2.0.0",
        "221 2.0.0",
    ]


def test_reading_pauses_while_input_piles_up() -> None:
    """S1: while a command waits, a large pipelined backlog pauses the transport."""
    world = World()
    world.factory.directory = SlowDirectory(world)
    client = world.connect()
    client.send(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n", False)
    client.send(b"NOOP\r\n" * 20000, settle=False)
    assert client.transport.producerState == "paused"
    for _ in range(20):
        world.clock.advance(1)
    assert client.transport.producerState == "producing"
    assert client.replies().count("250 2.0.0 Ok") == 20000


# ---------------------------------------------------------------------- hooks and plugins
def test_connect_hook_can_refuse_the_connection() -> None:
    """S1: a connect-hook reject replaces the greeting; a 554 waits for QUIT and answers 503
    meanwhile (RFC 5321 3.1), any other refusal closes."""
    from mailmax.core.verdicts import reject, tempfail

    world = World(plugins=plugin_set(mailmax_connect=lambda session: reject("Go away", 554)))
    client = world.connect()
    assert client.greeting == "554 5.7.1 Go away\r\n"
    assert not client.closed
    assert client.cmd("EHLO client.test").startswith("503 5.7.1 ")
    assert client.cmd("MAIL FROM:<>").startswith("503 5.7.1 ")
    assert client.cmd("QUIT").startswith("221 ")
    assert client.closed
    world = World(plugins=plugin_set(mailmax_connect=lambda session: tempfail("Busy", 421)))
    client = world.connect()
    assert client.greeting == "421 4.3.0 Busy\r\n"
    assert client.closed


def test_helo_and_mail_from_hooks() -> None:
    """S1: helo and mail_from hooks see the arguments; their refusals answer the command."""
    from mailmax.core.verdicts import reject, tempfail

    world = World(
        plugins=plugin_set(
            mailmax_helo=lambda helo: reject("Bad HELO", 550) if helo == "bad" else None,
            mailmax_mail_from=lambda sender: tempfail("Greylisted") if sender else None,
        )
    )
    client = world.connect()
    assert client.cmd("EHLO bad") == "550 5.7.1 Bad HELO\r\n"
    assert client.cmd("MAIL FROM:<>").startswith("503")
    client.cmd("EHLO good")
    assert client.cmd("MAIL FROM:<a@remote.test>") == "451 4.3.0 Greylisted\r\n"
    assert client.cmd("MAIL FROM:<>").startswith("250 2.1.0")


def test_a_session_keeps_its_plugin_set() -> None:
    """S1: a reload (new plugin set) does not change a session in flight."""
    from mailmax.core.verdicts import reject

    world = World()
    client = world.connect()
    world.plugins = plugin_set(mailmax_helo=lambda helo: reject("New rules"))
    assert client.cmd("EHLO c").startswith("250-")
    assert world.connect().cmd("EHLO c").startswith("550")


def test_connection_is_logged() -> None:
    """S1, L2: one log line per connection names the peer and the listener."""
    from twisted.logger import formatEvent, globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        world = World()
        world.connect(peer="198.51.100.9").send_mail("a@remote.test", ["alice@example.test"], b"x")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "mailmax.smtp"]
    assert any("from 198.51.100.9:40000 on 127.0.0.1:2525 (smtp)" in line for line in lines)
    assert any(
        re.search(r"accepted [0-9a-f]{18} from <a@remote.test> to alice@example.test size 3", line)
        for line in lines
    )


# ---------------------------------------------------------------------- shutdown
def lose(client: Any) -> None:
    """Deliver connectionLost when the server asked to close."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    if client.transport.disconnecting and client.proto._mode == "closed":
        client.proto.connectionLost(Failure(ConnectionDone()))


def test_shutdown_closes_idle_sessions_at_once() -> None:
    """S1: on shutdown idle sessions get 421 4.3.2 and the Deferred fires when all are gone."""
    world = World()
    one, two = world.connect(), world.connect()
    one.cmd("EHLO c")
    one.cmd("MAIL FROM:<a@remote.test>")  # an envelope alone is not DATA in flight
    done = world.factory.shutdown(10)
    for client in (one, two):
        assert client.read() == "421 4.3.2 Service shutting down\r\n"
        assert not done.called
        lose(client)
    assert done.called and world.factory.sessions == set()


def test_shutdown_lets_data_in_flight_finish() -> None:
    """S1: a session receiving DATA may finish within the grace period, then gets 421."""
    world = World()
    client = world.connect()
    client.cmd("EHLO c")
    client.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhal")
    client.read()
    done = world.factory.shutdown(10)
    world.clock.advance(5)
    client.send(b"f\r\n.\r\nMAIL FROM:<b@remote.test>\r\n")
    replies = client.replies()
    assert replies[0].startswith("250 2.0.0 Ok: queued as ")
    assert replies[1:] == ["421 4.3.2 Service shutting down"]
    lose(client)
    assert done.called


def test_shutdown_grace_runs_out() -> None:
    """S1: a transaction still running when the grace period ends gets 421 and is closed."""
    world = World()
    client = world.connect()
    client.send_mail("a@remote.test", ["alice@example.test"], b"x", settle=False)
    client.read()
    done = world.factory.shutdown(3)
    world.clock.advance(2.9)
    assert client.read() == "" and not client.closed
    world.clock.advance(0.2)
    assert client.read() == "421 4.3.2 Service shutting down\r\n"
    lose(client)
    assert done.called


def test_shutdown_with_no_sessions() -> None:
    """S1: shutting down an idle listener fires at once."""
    assert World().factory.shutdown(5).called


def test_command_line_length_boundary() -> None:
    """P6: a line of exactly max_command_line bytes is fine, even when its LF comes later."""
    client = World(smtp={"max_command_line": 512}).connect()
    exact = b"NOOP " + b"x" * 507
    client.send(exact + b"\r")
    client.send(b"\n")
    assert client.replies() == ["250 2.0.0 Ok"]
    assert client.cmd(exact + b"y") == "500 5.5.2 Line too long\r\n"
