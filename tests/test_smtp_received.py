"""The Received trace header (S1, Q5): RFC 5321 4.4 form, RFC 5322 date, safe against odd HELOs."""

from __future__ import annotations

import email
import email.utils
import time

from mailmax.core.smtp.received import address_literal, protocol_name, received_header


def test_header_form_for_one_recipient() -> None:
    """S1: from HELO ([ip]) by host (MailMax) with PROTO id QID for <rcpt>; date."""
    when = 1_700_000_000.0
    header = received_header(
        helo="client.example",
        client_ip="192.0.2.7",
        hostname="mx.example.test",
        protocol="ESMTPSA",
        queue_id="Q123",
        recipients=["alice@example.test"],
        reverse_name="host7.example",
        when=when,
    )
    text = header.decode("ascii")
    assert text.endswith("\r\n")
    assert text.startswith(
        "Received: from client.example (host7.example [192.0.2.7])\r\n"
        "\tby mx.example.test (MailMax) with ESMTPSA id Q123\r\n"
        "\tfor <alice@example.test>;\r\n\t"
    )
    parsed = email.message_from_bytes(header + b"\r\n")
    value = parsed["Received"]
    date = email.utils.parsedate_to_datetime(value.rsplit(";", 1)[1].strip())
    assert date.timestamp() == when
    assert all(len(line) <= 998 for line in text.split("\r\n"))


def test_several_recipients_are_not_named() -> None:
    """S1: with several recipients no 'for' clause discloses the others."""
    header = received_header(
        helo="c",
        client_ip="192.0.2.7",
        hostname="mx",
        protocol="ESMTP",
        queue_id="Q1",
        recipients=["a@x.test", "b@x.test"],
    ).decode()
    assert "for <" not in header and "id Q1;" in header


def test_hostile_helo_cannot_break_the_header() -> None:
    """S1: spaces, parentheses and semicolons in HELO are neutralised; no header injection."""
    header = received_header(
        helo="evil (fake [1.2.3.4]); by\tx",
        client_ip="192.0.2.7",
        hostname="mx",
        protocol="SMTP",
        queue_id="Q1",
        recipients=["a@x.test"],
        when=time.time(),
    ).decode()
    first = header.split("\r\n")[0]
    assert first == "Received: from evil??fake?[1.2.3.4]???by?x ([192.0.2.7])"


def test_protocol_names_and_literals() -> None:
    """S1: RFC 3848 protocol keywords and address literals for IPv4, IPv6 and mapped IPv4."""
    assert protocol_name(False, True, True) == "SMTP"
    assert protocol_name(True, False, False) == "ESMTP"
    assert protocol_name(True, True, False) == "ESMTPS"
    assert protocol_name(True, False, True) == "ESMTPA"
    assert protocol_name(True, True, True) == "ESMTPSA"
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
    assert address_literal("::ffff:192.0.2.1") == "[192.0.2.1]"
    assert address_literal("198.51.100.2") == "[198.51.100.2]"
