"""SMTP session basics over an in-process transport: greeting, EHLO/HELO, QUIT (S1, S7)."""

from __future__ import annotations

from tests.test_smtp_harness import World


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
