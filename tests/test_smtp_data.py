"""The raw DATA reader (S1, P6, Q5): end detection, unstuffing, content checks, bounded memory."""

from __future__ import annotations

import pytest

from mailmax.core.smtp.data import DataReader


def read_all(data: bytes, chunk: int | None = None, max_size: int = 10**6, max_line: int = 1000):
    """Feed ``data`` in pieces of ``chunk`` bytes; return (reader, leftover)."""
    reader = DataReader(max_size, max_line)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    rest = None
    for index, piece in enumerate(pieces):
        rest = reader.feed(piece)
        if rest is not None:
            rest += b"".join(pieces[index + 1 :])
            break
    return reader, rest


MESSAGE = (
    b"Received: from a\r\nReceived: from b\r\nSubject: test\r\n\r\n"
    b"..leading dot\r\n.\tdot tab\r\nplain\r\n...\r\nend"
)
WIRE = MESSAGE + b"\r\n.\r\nQUIT\r\n"
EXPECTED = (
    b"Received: from a\r\nReceived: from b\r\nSubject: test\r\n\r\n"
    b".leading dot\r\n\tdot tab\r\nplain\r\n..\r\nend\r\n"
)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 4, 5, 7, 64])
def test_end_detection_and_unstuffing_at_any_chunk_boundary(chunk: int | None) -> None:
    """S1: CRLF.CRLF ends the message wherever the reads split it; dots are unstuffed."""
    reader, rest = read_all(WIRE, chunk)
    assert rest == b"QUIT\r\n"
    assert reader.result.message == EXPECTED
    assert reader.result.size == len(EXPECTED)
    assert reader.result.received_headers == 2
    assert reader.result.problem(10**6, 1000, 50) is None


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_empty_message(chunk: int | None) -> None:
    """S1: a lone '.' right after 354 is an empty message."""
    reader, rest = read_all(b".\r\nNOOP\r\n", chunk)
    assert rest == b"NOOP\r\n"
    assert reader.result.message == b""


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]
)
def test_only_crlf_dot_crlf_ends_the_message(fake_end: bytes) -> None:
    """S1 (SMTP smuggling): bare LF/CR variants of the end marker are content, then refused."""
    smuggled = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nforged"
    wire = b"Subject: a\r\n\r\nbody" + fake_end + smuggled + b"\r\n.\r\n"
    reader, rest = read_all(wire)
    assert rest == b""
    assert smuggled in reader.result.message
    problem = reader.result.problem(10**6, 1000, 50)
    assert problem is not None and problem.code == 550


@pytest.mark.parametrize("content", [b"a\nb", b"a\rb", b"a\r\rb", b"a\n\rb", b"end\r"])
def test_bare_cr_or_lf_is_refused(content: bytes) -> None:
    """S1: a bare CR or LF anywhere in the message is refused with 550 after the end."""
    reader, _ = read_all(b"Subject: x\r\n\r\n" + content + b"\r\n.\r\n", chunk=3)
    assert reader.result.bare_eol
    problem = reader.result.problem(10**6, 1000, 50)
    assert (problem.code, problem.status) == (550, "5.6.0")


def test_nul_is_refused() -> None:
    """S1: NUL characters are refused."""
    reader, _ = read_all(b"Subject: x\r\n\r\na\0b\r\n.\r\n")
    problem = reader.result.problem(10**6, 1000, 50)
    assert problem.code == 550 and "NUL" in problem.text


def test_line_length_limit() -> None:
    """P6: a line longer than max_data_line is refused; a line of exactly the limit is fine."""
    ok, _ = read_all(b"a" * 1000 + b"\r\n.\r\n", chunk=300, max_line=1000)
    assert not ok.result.long_line
    bad, rest = read_all(b"b" * 1001 + b"\r\nmore\r\n.\r\nQUIT\r\n", chunk=300, max_line=1000)
    assert bad.result.long_line and rest == b"QUIT\r\n"
    assert "longer than 1000" in bad.result.problem(10**6, 1000, 50).text


def test_a_line_without_end_does_not_grow_memory() -> None:
    """P6: a client that never sends CRLF cannot make the reader hold more than one line."""
    reader = DataReader(max_size=10**9, max_line=1000)
    for _ in range(1000):
        assert reader.feed(b"x" * 10000) is None
        assert len(reader._buf) <= 1001
    assert reader.feed(b"\r\n.\r\nRSET\r\n") == b"RSET\r\n"
    assert reader.result.long_line


def test_size_limit_stops_buffering_but_finds_the_end() -> None:
    """P6: past the size limit nothing more is kept; the reader still finds the end."""
    reader = DataReader(max_size=10000, max_line=1000)
    line = b"y" * 98 + b"\r\n"
    for _ in range(1000):
        assert reader.feed(line * 10) is None
        assert sum(map(len, reader.result.chunks)) <= 10000
    assert reader.feed(b".\r\n") == b""
    result = reader.result
    assert result.too_big and result.chunks == [] and result.size == 1000 * 10 * 100
    assert (result.problem(10000, 1000, 50).code, result.problem(10000, 1000, 50).status) == (
        552,
        "5.3.4",
    )


def test_size_is_counted_after_unstuffing() -> None:
    """P6: the limit applies to the message as stored (dot-stuffing does not count)."""
    body = b"..\r\n" * 25  # 100 bytes on the wire, 75 after unstuffing
    reader, _ = read_all(body + b".\r\n", max_size=75)
    assert not reader.result.too_big and reader.result.size == 75


def test_hop_count() -> None:
    """Q5: Received headers are counted in the header section only, case-insensitively."""
    head = b"".join(b"received: from hop%d\r\n" % i for i in range(51))
    reader, _ = read_all(head + b"\r\nReceived: in the body\r\n.\r\n", chunk=17)
    assert reader.result.received_headers == 51
    problem = reader.result.problem(10**6, 1000, 50)
    assert (problem.code, problem.status) == (554, "5.4.6")
    fifty, _ = read_all(head[: head.index(b"received: from hop50")] + b"\r\nbody\r\n.\r\n")
    assert fifty.result.received_headers == 50
    assert fifty.result.problem(10**6, 1000, 50) is None


def test_feeding_after_the_end_is_an_error() -> None:
    """S1: the reader handles exactly one message."""
    reader, _ = read_all(b".\r\n")
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


def test_long_line_probe_matches_a_line_by_line_check() -> None:
    """P6: the windowed long-line probe agrees with measuring every line."""
    import random

    from mailmax.core.smtp.data import has_long_line

    rng = random.Random(5321)
    for _ in range(5000):
        limit = rng.randint(1, 40)
        block = b"".join(
            b"x" * rng.choice([rng.randint(0, limit + 3), rng.randint(0, 3 * limit)]) + b"\r\n"
            for _ in range(rng.randint(1, 12))
        )
        expected = any(len(line) - 1 > limit for line in block.split(b"\n")[:-1])
        assert has_long_line(block, limit) == expected, (block, limit)
