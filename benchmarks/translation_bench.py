"""What translating OpenAI requests to other providers costs, per request and per stream chunk (issue 8).

    .venv/bin/python benchmarks/translation_bench.py [--loops 2000] [--reps 7]

Pure translation, in-process, on the shared provider fixtures (../shared/fixtures/providers):

* **request**: decoding the client's OpenAI body plus building the provider's native body, for a
  one-line chat and for the fixture conversation (system prompt, tool call and result, image, tool
  definition);
* **response**: a provider's plain answer (the fixture ``response.json``) to a ``chat.completion``;
* **stream chunk**: the provider's fixture stream fed one upstream event (SSE event, NDJSON line or
  event-stream frame) at a time to its native observer, which decodes it once for the record and the
  translator, total time divided by the events.

Then the router itself (no network: ``httpx.MockTransport``): CPU per request for an alias served by
an OpenAI-compatible provider (no translation) and one served by Anthropic (translated both ways),
interleaved. Timings are medians of ``--reps`` repetitions of ``--loops`` iterations
(``time.perf_counter_ns``); nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llm_obs_middleware import Config, RouterMiddleware
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.codecs.eventstream import EventStreamDecoder
from llm_obs_middleware.providers.registry import adapter_for_kind
from llm_obs_middleware.providers.translators import ResponseContext, Translator, translator_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "providers"
SMALL = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
STREAMED = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
FIXTURES = {  # provider kind -> (fixture directory, stream file)
    "anthropic": ("anthropic_messages", "stream.txt"),
    "bedrock": ("bedrock_converse", "stream.bin"),
    "cohere": ("cohere_v2", "stream.txt"),
    "gemini": ("gemini", "stream.txt"),
    "ollama": ("ollama", "stream.txt"),
}
CONTEXT = ResponseContext(1_760_000_000, "model", "chatcmpl-bench", include_usage=True)


def per_op_us(run: Callable[[], object], loops: int, reps: int) -> float:
    """Median over ``reps`` of the mean time of ``loops`` calls, in microseconds."""
    run()  # warm-up (lazy imports, caches)
    samples = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        for _ in range(loops):
            run()
        samples.append((time.perf_counter_ns() - start) / loops / 1000)
    return statistics.median(samples)


def upstream_events(kind: str, data: bytes) -> list[bytes]:
    """The stream as its provider sends it: one chunk per event."""
    if kind == "bedrock":
        chunks, decoder, start = [], EventStreamDecoder(), 0
        for end in range(1, len(data) + 1):  # frame boundaries, found once
            if decoder.feed(data[end - 1 : end]):
                chunks.append(data[start:end])
                start = end
        return chunks
    if kind == "ollama":
        return [line + b"\n" for line in data.split(b"\n") if line]
    separator = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
    return [event + separator for event in data.split(separator) if event.strip()]


def measure(
    kind: str,
    translator: Translator[Any],
    conversation: bytes,
    answer: bytes,
    events: list[bytes],
    loops: int,
    reps: int,
) -> tuple[float, float, float, float]:
    """µs for a small request, the fixture conversation, a plain answer, and per stream event."""

    adapter = adapter_for_kind(kind)
    path = translator.request(translator.decode(STREAMED), "m", unsupported="drop").path.partition("?")[0]
    endpoint = adapter.match("POST", path)
    assert endpoint is not None

    def stream() -> None:
        # As the router does it: the native observer decodes once, the translator reads its events.
        decoder = adapter.observer(endpoint, Exchange({}), streamed=True, status=200)
        translating = translator.stream(CONTEXT)
        translating.attach(decoder)
        for event in events:
            decoder.feed(event, 0)
            translating.take()
        translating.close()

    return (
        per_op_us(lambda: translator.request(translator.decode(SMALL), "m", unsupported="drop"), loops, reps),
        per_op_us(lambda: translator.request(translator.decode(conversation), "m", unsupported="drop"), loops, reps),
        per_op_us(lambda: translator.response(answer, CONTEXT), loops, reps),
        per_op_us(stream, max(1, loops // 10), reps) / len(events),
    )


def translation_rows(loops: int, reps: int) -> list[str]:
    conversation = (SHARED / "openai_chat" / "request.json").read_bytes()
    rows = []
    for kind, (directory, stream_file) in FIXTURES.items():
        found = translator_for(kind, "openai.chat_completions")
        assert found is not None
        answer = (SHARED / directory / "response.json").read_bytes()
        events = upstream_events(kind, (SHARED / directory / stream_file).read_bytes())
        small, full, response, per_chunk = measure(kind, found, conversation, answer, events, loops, reps)
        rows.append(f"| {kind} | {small:.1f} | {full:.1f} | {response:.1f} | {per_chunk:.2f} ({len(events)} events) |")
    return rows


ANTHROPIC_ANSWER = (
    b'{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"ok"}],'
    b'"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}'
)
OPENAI_ANSWER = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":'
    b'{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
    b'"completion_tokens":1,"total_tokens":2}}'
)


def answer(request: httpx.Request) -> httpx.Response:
    body = ANTHROPIC_ANSWER if request.url.path == "/v1/messages" else OPENAI_ANSWER
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


async def not_routed(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("every request is routed")


async def router_us(router: RouterMiddleware, model: str, requests: int) -> float:
    body = SMALL.replace(b'"m"', f'"{model}"'.encode())
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        return None

    start = time.process_time_ns()
    for _ in range(requests):
        await router(dict(scope), receive, send)
    return (time.process_time_ns() - start) / requests / 1000


async def router_rows(requests: int, reps: int) -> list[str]:
    config = Config.from_dict(
        {
            "providers": {
                "openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k"]},
                "anthropic": {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["k"]},
            },
            "models": {"gpt": {"provider": "openai"}, "claude": {"provider": "anthropic"}},
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    router = RouterMiddleware(not_routed, config=config, client=client)
    samples: dict[str, list[float]] = {"gpt": [], "claude": []}
    for model in samples:
        await router_us(router, model, 200)  # warm-up
    for _ in range(reps):
        for model, values in samples.items():  # interleaved, so machine noise hits both alike
            values.append(await router_us(router, model, requests))
    await client.aclose()
    plain, translated = (statistics.median(values) for values in samples.values())
    return [
        f"| OpenAI-compatible provider (no translation) | {plain:.1f} |",
        f"| Anthropic (translated request and answer) | {translated:.1f} |",
        f"| difference | {translated - plain:+.1f} |",
    ]


def main(loops: int, reps: int) -> int:
    out = sys.stdout
    out.write("Translation, µs per operation (median):\n\n")
    out.write("| provider | request: one-line chat | request: conversation | plain answer | per stream chunk |\n")
    out.write("|---|---|---|---|---|\n")
    for row in translation_rows(loops, reps):
        out.write(row + "\n")
    out.write("\nRouter in-process (MockTransport upstream), CPU µs per plain request (median):\n\n")
    out.write("| alias served by | CPU µs per request |\n|---|---|\n")
    for row in asyncio.run(router_rows(loops, reps)):
        out.write(row + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    raise SystemExit(main(args.loops, args.reps))
