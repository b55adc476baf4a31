"""Stream observers give the same result whatever the chunking and line-ending style of the stream."""

from __future__ import annotations

import itertools

import pytest
from _openai_cases import Case, assert_matches_expected, new_exchange, observe, stream_cases
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter

STREAMS = [pytest.param(case, id=case.id) for case in stream_cases()]


def test_all_fixture_streams_are_covered() -> None:
    assert {case.id for case in stream_cases()} == {
        "openai_chat/stream.txt",
        "openai_chat/variants/azure_stream.txt",
        "openai_chat/variants/groq_stream.txt",
        "openai_chat/variants/vllm_stream.txt",
        "openai_chat/variants/mistral_stream.txt",
        "openai_responses/stream.txt",
    }


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    bounds = [0, *points, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert b"".join(chunks) == data
    return chunks


def _crlf(data: bytes) -> bytes:
    assert b"\r" not in data
    return data.replace(b"\n", b"\r\n")


def _cr(data: bytes) -> bytes:
    assert b"\r" not in data
    return data.replace(b"\n", b"\r")


cut_lists = st.lists(st.integers(min_value=0, max_value=20_000), max_size=40)


@pytest.mark.parametrize("case", STREAMS)
@settings(max_examples=100, deadline=None)
@given(cuts=cut_lists)
def test_random_splits_match_whole_body(case: Case, cuts: list[int]) -> None:
    body = case.body()
    whole = observe(case, [body])
    split = observe(case, _split(body, [cut % (len(body) + 1) for cut in cuts]))
    assert split == whole
    assert_matches_expected(split, case.expected)


@pytest.mark.parametrize("case", STREAMS)
def test_byte_by_byte(case: Case) -> None:
    body = case.body()
    result = observe(case, [body[i : i + 1] for i in range(len(body))])
    assert_matches_expected(result, case.expected)


@pytest.mark.parametrize("case", STREAMS)
@settings(max_examples=100, deadline=None)
@given(cuts=cut_lists)
def test_ttft_is_the_chunk_completing_the_first_token_event(case: Case, cuts: list[int]) -> None:
    """With any chunking, TTFT is the now_ns of the chunk holding the last byte of the first token event."""
    body = case.body()
    chunks = _split(body, [cut % (len(body) + 1) for cut in cuts])
    whole_exchange = new_exchange(case.fixture)
    observe(case, [body], whole_exchange)
    # Which event first carries a token, found by feeding the events one by one.
    events = [part + b"\n\n" for part in body.split(b"\n\n")[:-1]]
    exchange = new_exchange(case.fixture)
    observer = OpenAIAdapter().observer(case.endpoint, exchange, streamed=True, status=200)
    first_event = None
    for i, event in enumerate(events):
        observer.feed(event, i + 1)
        if exchange.first_token_ns and first_event is None:
            first_event = i
    assert first_event is not None
    end_offset = sum(len(event) for event in events[: first_event + 1])  # one past the event's last byte
    # observe() feeds chunk k with now_ns = k (1-based).
    expected_chunk, seen = 0, 0
    for k, chunk in enumerate(chunks, start=1):
        seen += len(chunk)
        if seen >= end_offset:
            expected_chunk = k
            break
    split_exchange = new_exchange(case.fixture)
    observe(case, chunks, split_exchange)
    assert split_exchange.first_token_ns == expected_chunk


@pytest.mark.parametrize("convert", [_crlf, _cr], ids=["crlf", "cr"])
@pytest.mark.parametrize("case", STREAMS)
def test_line_endings_parse_the_same(case: Case, convert: object) -> None:
    body = case.body()
    converted = convert(body)  # type: ignore[operator]
    assert converted != body
    assert observe(case, [converted]) == observe(case, [body])


@pytest.mark.parametrize("convert", [_crlf, _cr], ids=["crlf", "cr"])
@pytest.mark.parametrize("case", STREAMS)
@settings(max_examples=50, deadline=None)
@given(cuts=cut_lists)
def test_line_endings_random_splits(case: Case, convert: object, cuts: list[int]) -> None:
    converted = convert(case.body())  # type: ignore[operator]
    result = observe(case, _split(converted, [cut % (len(converted) + 1) for cut in cuts]))
    assert_matches_expected(result, case.expected)


@pytest.mark.parametrize("case", STREAMS)
def test_crlf_split_inside_every_line_ending(case: Case) -> None:
    """Cut every CRLF between its CR and LF: the worst case for a parser that normalises line ends."""
    converted = _crlf(case.body())
    result = observe(case, [part + b"\r" for part in converted.split(b"\r")[:-1]] + [converted.split(b"\r")[-1]])
    assert_matches_expected(result, case.expected)
