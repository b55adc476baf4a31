"""An upstream that never ends an event (or a line) cannot make the gateway hold it all (issue 13, finding 6)."""

from __future__ import annotations

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.codecs.ndjson import NDJSONSplitter
from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers.openai.adapter import CHAT, OpenAIAdapter
from llm_obs_middleware.routing.relay import _UsageChunkFilter

MAX_EVENT_BYTES = 8 * 1024 * 1024  # _sse.MAX_EVENT_BYTES
PIECE = b"x" * (256 * 1024)
PIECES = MAX_EVENT_BYTES // len(PIECE) + 2  # past the bound


def test_sse_parser_drops_an_event_past_the_bound_and_reads_the_next() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"content":"') == []
    for _ in range(PIECES):
        assert parser.feed(PIECE) == []
    assert len(parser._tail) <= MAX_EVENT_BYTES
    assert parser.feed(b'"}\n\ndata: {"usage":1}\n\n') == [(b"", b'{"usage":1}')]


def test_sse_parser_drops_an_event_of_many_data_lines_past_the_bound() -> None:
    parser = SSEParser()
    for _ in range(PIECES):
        assert parser.feed(b"data: " + PIECE + b"\n") == []
    assert sum(map(len, parser._data)) <= MAX_EVENT_BYTES
    assert parser.feed(b"\ndata: next\n\n") == [(b"", b"next")]


def test_ndjson_splitter_drops_a_line_past_the_bound_and_reads_the_next() -> None:
    splitter = NDJSONSplitter()
    for _ in range(PIECES):
        assert splitter.feed(PIECE) == []
    assert len(splitter._tail) <= MAX_EVENT_BYTES
    assert splitter.feed(b'"}\n{"done":true}\n') == [b'{"done":true}']


def test_usage_filter_passes_an_endless_event_through_instead_of_holding_it() -> None:
    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    usage_filter = _UsageChunkFilter(exchange)
    sent = [usage_filter.feed(b'data: {"choices":[{"delta":{"content":"')]
    sent += [usage_filter.feed(PIECE) for _ in range(PIECES)]
    assert len(usage_filter._tail) <= MAX_EVENT_BYTES
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n'
    sent.append(usage_filter.feed(b'"}}]}\n\n' + usage + b"data: [DONE]\n\n"))
    sent.append(usage_filter.close())
    out = b"".join(sent)
    # Everything but the usage event, which is still cut out after the endless one ended.
    assert out == b'data: {"choices":[{"delta":{"content":"' + PIECE * PIECES + b'"}}]}\n\ndata: [DONE]\n\n'


def test_a_body_over_8_mb_keeps_the_usage_it_ends_with_not_a_quoted_one() -> None:
    observer = OpenAIAdapter().observer(CHAT, Exchange({}), streamed=False, status=200)
    observer.feed(b'{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"message":{"content":"', 1)
    for _ in range(PIECES):
        observer.feed(PIECE, 2)
    # Content quoting a usage object (its quotes escaped), then the answer's own usage.
    observer.feed(b'\\"usage\\":{\\"prompt_tokens\\":1}"},"finish_reason":"stop"}],', 3)
    observer.feed(b'"usage":{"prompt_tokens":40,"completion_tokens":6,"total_tokens":46}}', 4)
    result = observer.finish()
    assert (result.id, result.model) == ("c1", "gpt-4o")
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (40, 6)
