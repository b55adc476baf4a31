"""SSEParser: WHATWG event-stream rules, and independence from chunking."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from llm_obs_middleware.codecs.sse import SSEParser


def parse(*chunks: bytes) -> list[tuple[bytes, bytes]]:
    parser = SSEParser()
    events: list[tuple[bytes, bytes]] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert b"".join(chunks) == data
    return chunks


# --- SSEParser: field rules -----------------------------------------------------------------------


def test_single_event() -> None:
    assert parse(b'data: {"a":1}\n\n') == [(b"", b'{"a":1}')]


def test_multi_line_data_joined_with_lf() -> None:
    assert parse(b"data: first\ndata: second\ndata: third\n\n") == [(b"", b"first\nsecond\nthird")]


def test_event_name() -> None:
    assert parse(b"event: response.created\ndata: {}\n\n") == [(b"response.created", b"{}")]


def test_event_name_resets_after_dispatch() -> None:
    assert parse(b"event: a\ndata: 1\n\ndata: 2\n\n") == [(b"a", b"1"), (b"", b"2")]


def test_event_name_after_data_still_applies() -> None:
    assert parse(b"data: 1\nevent: late\n\n") == [(b"late", b"1")]


def test_comments_ignored() -> None:
    stream = b": keep-alive\n\n:another\ndata: x\n: in the middle\ndata: y\n\n:\n\n"
    assert parse(stream) == [(b"", b"x\ny")]


def test_id_and_retry_ignored() -> None:
    assert parse(b"id: 7\nretry: 3000\ndata: x\n\n") == [(b"", b"x")]


def test_data_without_space() -> None:
    assert parse(b"data:x\n\n") == [(b"", b"x")]


def test_event_without_space() -> None:
    assert parse(b"event:ping\ndata:x\n\n") == [(b"ping", b"x")]


def test_only_one_leading_space_is_stripped() -> None:
    assert parse(b"data:  two spaces\n\n") == [(b"", b" two spaces")]


def test_colons_in_value_kept() -> None:
    assert parse(b"data: a: b:c\n\n") == [(b"", b"a: b:c")]


def test_empty_data_line_dispatches_empty_string() -> None:
    # WHATWG: "data:" makes the data buffer "\n", which is not empty: the event fires with data "".
    assert parse(b"data:\n\n") == [(b"", b"")]
    assert parse(b"data:\ndata:\n\n") == [(b"", b"\n")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: lonely\n\n") == []
    assert parse(b"\n\n\n") == []


def test_crlf_and_cr_line_endings() -> None:
    expected = [(b"e", b"1\n2"), (b"", b"3")]
    assert parse(b"event: e\ndata: 1\ndata: 2\n\ndata: 3\n\n") == expected
    assert parse(b"event: e\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n") == expected
    assert parse(b"event: e\rdata: 1\rdata: 2\r\rdata: 3\r\r") == expected


def test_crlf_split_between_chunks_exactly_at_cr_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # The LF completes the CRLF begun in the previous chunk: one line end, not two (no dispatch yet).
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [(b"", b"a\nb")]
    assert parser.close() == []


def test_cr_at_chunk_end_followed_by_other_text() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\rdata: b\r\r") == [(b"", b"a")]
    # The final CR may still be half of a CRLF: only the end of the stream settles it.
    assert parser.close() == [(b"", b"b")]


def test_unterminated_last_event_dispatched_by_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\nevent: last\ndata: partial") == [(b"", b"1")]
    assert parser.close() == [(b"last", b"partial")]
    assert parser.close() == []


def test_close_dispatches_event_missing_only_blank_line() -> None:
    assert parse(b"data: x\n") == [(b"", b"x")]


def test_close_with_nothing_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n\n") == [(b"", b"x")]
    assert parser.close() == []
    assert SSEParser().close() == []


def test_close_ignores_pending_comment() -> None:
    assert parse(b"data: x\n\n: trailing comment") == [(b"", b"x")]


def test_empty_chunks_are_harmless() -> None:
    assert parse(b"", b"data: a", b"", b"\r", b"", b"\n\r\n", b"") == [(b"", b"a")]


def test_every_byte_in_its_own_chunk() -> None:
    stream = b"event: e\r\ndata: 1\r\n: c\r\ndata: 2\r\n\r\ndata:3\n\ndata: 4\r\r"
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == parse(stream)
    assert parse(stream) == [(b"e", b"1\n2"), (b"", b"3"), (b"", b"4")]


# --- generated streams ----------------------------------------------------------------------------

_value = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12).map(
    lambda s: s.encode()
)
_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=10).map(str.encode)


@dataclass(frozen=True)
class _Event:
    name: bytes
    data: list[bytes]
    comments: list[bytes]
    spaced: bool


_events = st.builds(
    _Event,
    name=st.one_of(st.just(b""), _name),
    data=st.lists(_value, min_size=1, max_size=4),
    comments=st.lists(_value, max_size=2),
    spaced=st.booleans(),
)


def _encode(events: list[_Event], eol: bytes, terminated: bool) -> tuple[bytes, list[bytes]]:
    """Serialize events; also return each raw event (terminator included) as a splitter must see it."""
    raw: list[bytes] = []
    for event in events:
        lines = [b":" + comment for comment in event.comments]
        if event.name:
            lines.append(b"event: " + event.name)
        for value in event.data:
            # "data:" + value only when that cannot lose a leading space of the value.
            lines.append((b"data: " if event.spaced or value.startswith(b" ") else b"data:") + value)
        raw.append(b"".join(line + eol for line in lines) + eol)
    if raw and not terminated:
        raw[-1] = raw[-1][: -2 * len(eol)]  # no line end, no blank line
    return b"".join(raw), raw


def _expected(events: list[_Event]) -> list[tuple[bytes, bytes]]:
    return [(event.name, b"\n".join(event.data)) for event in events]


_eols = st.sampled_from([b"\n", b"\r\n", b"\r"])
_cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(_events, max_size=6), eol=_eols, terminated=st.booleans(), cuts=_cuts)
def test_parser_any_split_any_line_ending(events: list[_Event], eol: bytes, terminated: bool, cuts: list[int]) -> None:
    stream, _ = _encode(events, eol, terminated)
    assert parse(*cut(stream, cuts)) == _expected(events)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b":", b" ", b"\r", b"\n", b"data: ", b"event:"]), max_size=40).map(b"".join),
    cuts=_cuts,
)
def test_parser_arbitrary_bytes_split_invariant(data: bytes, cuts: list[int]) -> None:
    assert parse(*cut(data, cuts)) == parse(data)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(_events, max_size=6), cuts=_cuts)
def test_parser_reads_split_at_line_ends_as_the_whole_stream(events: list[_Event], cuts: list[int]) -> None:
    # Reads that hold exactly one whole event take the parser's fast path, also after an ``event:``
    # line that came in the read before.
    stream, _ = _encode(events, b"\n", True)
    lines = stream.splitlines(keepends=True)
    points = sorted({c % (len(lines) + 1) for c in cuts})
    reads = [b"".join(lines[a:b]) for a, b in itertools.pairwise([0, *points, len(lines)])]
    assert parse(*reads) == _expected(events) == parse(stream)


def test_a_named_event_split_before_its_data_line() -> None:
    assert parse(b"event: delta\n", b'data: {"a":1}\n\n', b'data: {"b":2}\n\n') == [
        (b"delta", b'{"a":1}'),
        (b"", b'{"b":2}'),
    ]
