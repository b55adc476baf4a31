"""A translated stream is parsed once per request: the provider's native observer is its only decoder.

An OpenAI client streams from each translating provider through the full stack (``LLMObservability``)
and through the router alone, over ``httpx.MockTransport`` replaying the provider's fixture stream.
Every codec parser built during the request is counted: exactly one, of the provider's framing. The
client gets the same bytes as the translation the golden tests pin (``TranslatedStream``), and the
record is the native observer's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, LLMObservability, RouterMiddleware
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.asgi.state import SCOPE_KEY, Exchange
from llm_obs_middleware.codecs.eventstream import EventStreamDecoder
from llm_obs_middleware.codecs.ndjson import NDJSONSplitter
from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers.translate_base import ResponseContext
from llm_obs_middleware.records.schema import LLMRecord

from ._golden import SHARED, TranslatedStream, sse_events

# provider -> (fixture directory, stream file, content type, the codec that frames it)
STREAMS: dict[str, tuple[str, str, str, type]] = {
    "anthropic": ("anthropic_messages", "stream.txt", "text/event-stream", SSEParser),
    "bedrock": ("bedrock_converse", "stream.bin", "application/vnd.amazon.eventstream", EventStreamDecoder),
    "cohere": ("cohere_v2", "stream.txt", "text/event-stream", SSEParser),
    "gemini": ("gemini", "stream.txt", "text/event-stream", SSEParser),
    "ollama": ("ollama", "stream.txt", "application/x-ndjson", NDJSONSplitter),
}
CODECS = (SSEParser, NDJSONSplitter, EventStreamDecoder)
MODEL = "m-1"


@pytest.fixture
def parsers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The class name of every codec parser built, in order."""
    built: list[str] = []
    for codec in CODECS:
        original = codec.__init__

        def counting(self: Any, _original: Any = original) -> None:
            built.append(type(self).__name__)
            _original(self)

        monkeypatch.setattr(codec, "__init__", counting)
    yield built


def config(provider: str) -> Config:
    return Config.from_dict(
        {
            "providers": {provider: {"kind": provider, "base_url": f"http://{provider}.test", "api_keys": ["k"]}},
            "models": {"alias": {"provider": provider, "model": MODEL}},
            "routing": {"retries": 0},
        }
    )


def upstream(provider: str) -> httpx.AsyncClient:
    directory, file, content_type, _ = STREAMS[provider]
    data = (SHARED / directory / file).read_bytes()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 64):  # events split across reads
            yield data[start : start + 64]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=pieces())

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def stream_through(app: Any) -> tuple[bytes, Exchange]:
    """POST a streamed chat request for ``alias`` to ``app``; the client's body and the request's exchange."""
    exchanges: list[Exchange] = []

    async def outermost(scope: Scope, receive: Receive, send: Send) -> None:
        exchanges.append(scope.setdefault(SCOPE_KEY, Exchange(scope)))
        await app(scope, receive, send)

    body = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    transport = httpx.ASGITransport(app=outermost)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    [exchange] = exchanges
    return response.content, exchange


def translation(provider: str, exchange: Exchange) -> bytes:
    """What the golden tests' driver makes of the fixture stream, with the router's context."""
    directory, file, _, _ = STREAMS[provider]
    data = (SHARED / directory / file).read_bytes()
    context = ResponseContext(exchange.start_unix_nano // 1_000_000_000, MODEL, f"chatcmpl-{exchange.request_id}", True)
    stream = TranslatedStream(provider, context=context)
    return stream.feed(data) + stream.close()


@pytest.mark.parametrize("provider", sorted(STREAMS))
async def test_full_stack_parses_a_translated_stream_once(provider: str, parsers: list[str]) -> None:
    client = upstream(provider)
    stack = LLMObservability(_not_routed, config=config(provider), client=client)
    sink = _ListSink()
    stack.exporters.pipeline.sinks.append(sink)
    try:
        body, exchange = await stream_through(stack)
        await stack.exporters.pipeline.flush()
    finally:
        await stack.aclose()
        await client.aclose()
    assert parsers == [STREAMS[provider][3].__name__]
    assert body == translation(provider, exchange)
    events, done = sse_events(body)
    assert done and [event for event in events if event.get("usage")]
    # The one decoder was accounting's native observer: the record has the provider's usage.
    [record] = sink.records
    assert provider in record.provider and record.outcome == "completed"
    assert record.usage is not None and record.usage.output_tokens
    assert record.usage.output_tokens == events[-1]["usage"]["completion_tokens"]


@pytest.mark.parametrize("provider", sorted(STREAMS))
async def test_router_alone_decodes_a_translated_stream_once(provider: str, parsers: list[str]) -> None:
    client = upstream(provider)
    router = RouterMiddleware(_not_routed, config=config(provider), client=client)
    try:
        body, exchange = await stream_through(router)
    finally:
        await client.aclose()
    assert parsers == [STREAMS[provider][3].__name__], "nothing observes: the router builds the one decoder"
    assert body == translation(provider, exchange)
    assert sse_events(body)[1], "the stream completed: [DONE]"


async def test_a_stream_translator_reads_only_its_providers_observer() -> None:
    gemini, anthropic = TranslatedStream("gemini"), TranslatedStream("anthropic")
    with pytest.raises(TypeError, match="AnthropicStream reads a MessagesStreamObserver"):
        anthropic.stream.attach(gemini.decoder)


async def _not_routed(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("every request here is routed")


class _ListSink:
    """Collects exported records (a real sink, in memory)."""

    name = "list"

    def __init__(self) -> None:
        self.records: list[LLMRecord] = []

    async def start(self) -> None:
        return None

    async def export(self, records: Any) -> None:
        self.records.extend(records)

    async def close(self) -> None:
        return None
