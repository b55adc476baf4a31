"""The usage chunk the gateway asked for (the client did not) is cut out of any chunking of a stream."""

from __future__ import annotations

import itertools

from hypothesis import given, settings, strategies as st

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.routing.relay import _UsageChunkFilter

# As OpenAI sends them once usage is asked for: every chunk says "usage":null, the last one has no choices.
EVENTS = [
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hello"}}],"usage":null}\r\n\r\n',
    b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
]
USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = b"".join(EVENTS) + USAGE + DONE


class SeenByAccounting:
    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self.fed.append(chunk)


def _filter() -> tuple[_UsageChunkFilter, SeenByAccounting]:
    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    observer = SeenByAccounting()
    exchange.observer = observer  # type: ignore[assignment]
    return _UsageChunkFilter(exchange), observer


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True, max_size=12))
def test_any_split_forwards_everything_but_the_usage_event(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    usage_filter, observer = _filter()
    forwarded = b"".join(usage_filter.feed(STREAM[a:b]) for a, b in itertools.pairwise(bounds))
    forwarded += usage_filter.close()
    assert forwarded == b"".join(EVENTS) + DONE
    assert observer.fed == [USAGE]


def test_whole_events_pass_as_the_same_bytes() -> None:
    usage_filter, observer = _filter()
    for event in EVENTS:
        assert usage_filter.feed(event) is event
    several = EVENTS[0] + EVENTS[1]  # a read that got several whole events: not split and joined again
    assert usage_filter.feed(several) is several
    assert usage_filter.feed(USAGE) == b""
    assert observer.fed == [USAGE]


def test_a_read_ending_inside_an_event_forwards_the_whole_ones_at_once() -> None:
    usage_filter, observer = _filter()
    first = EVENTS[0] + EVENTS[1] + EVENTS[2][:20]
    assert usage_filter.feed(first) == EVENTS[0] + EVENTS[1]
    # The usage event's marker split across reads is still found.
    marker = USAGE.index(b'"choices":[]') + 5
    assert usage_filter.feed(EVENTS[2][20:] + USAGE[:marker]) == EVENTS[2]
    assert usage_filter.feed(USAGE[marker:] + DONE[:4]) == b""
    assert usage_filter.feed(DONE[4:]) == DONE
    assert usage_filter.close() == b""
    assert observer.fed == [USAGE]


def test_an_unended_last_event_is_forwarded_at_close() -> None:
    usage_filter, observer = _filter()
    assert usage_filter.feed(EVENTS[0] + b"data: [DONE]") == EVENTS[0]
    assert usage_filter.close() == b"data: [DONE]"
    assert observer.fed == []


@settings(max_examples=200)
@given(
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), unique=True, max_size=12),
    prompt_filter=st.booleans(),
)
def test_every_line_ending_and_split(eol: bytes, cuts: list[int], prompt_filter: bool) -> None:
    # Azure sends a prompt-filter chunk with no choices (and no usage) first: it is the client's to see.
    preamble = [b'data: {"id":"","choices":[],"prompt_filter_results":[]}\n\n'] if prompt_filter else []
    events = [event.replace(b"\r\n", b"\n").replace(b"\n", eol) for event in [*preamble, *EVENTS]]
    usage, done = USAGE.replace(b"\n", eol), DONE.replace(b"\n", eol)
    stream = b"".join(events) + usage + done
    bounds = [0, *sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]
    usage_filter, observer = _filter()
    forwarded = b"".join(usage_filter.feed(stream[a:b]) for a, b in itertools.pairwise(bounds))
    assert forwarded + usage_filter.close() == b"".join(events) + done
    assert observer.fed == [usage]
