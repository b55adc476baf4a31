"""Request-path CPU of the stack per request, with no network: direct ASGI calls, stub upstreams.

    .venv/bin/python benchmarks/inprocess.py            # ~1 min; add --quick for a smoke run

Two families, each against its own no-middleware baseline:

* Observing middlewares (trace context, export, accounting), each alone and together, around a stub
  ASGI app that answers with prebuilt fake-provider bytes (no HTTP client at all).
* Routing: ``RouterMiddleware`` alone and the whole ``LLMObservability`` stack, with an
  ``httpx.MockTransport`` upstream returning the same prebuilt bytes, against a bare pass-through
  over the same mock client (so the httpx client's own cost cancels out).

The export pipeline is replaced by a stub that only keeps the exchange (what ``submit`` costs on the
request path is a ``put_nowait``); what the export worker then spends per record (record building
and pricing, Prometheus, OTLP span + protobuf encoding, SQLite) is measured separately.
Streamed figures use 20 and 100 content chunks; "per chunk" is the slope between them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_proxy import HttpxProxy

from llm_obs_middleware.asgi.aliases import ASGIApp, Message, Receive, Scope, Send
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.exporters.factory import Exporters
from llm_obs_middleware.middleware.accounting import AccountingMiddleware
from llm_obs_middleware.middleware.export import ExportMiddleware
from llm_obs_middleware.middleware.stack import LLMObservability
from llm_obs_middleware.middleware.tracecontext import TraceContextMiddleware
from llm_obs_middleware.routing.middleware import RouterMiddleware
from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider
from llm_obs_middleware.upstream.client import Upstream, build_upstream

App = ASGIApp
MODEL = "gpt-4o-mini"
MESSAGES = b'"messages":[{"role":"user","content":"Say hello in five words."}]'
PLAIN = b'{"model":"' + MODEL.encode() + b'",' + MESSAGES + b',"max_tokens":64}'
STREAM = PLAIN[:-1] + b',"stream":true}'
UPSTREAM_STREAM = STREAM[:-1] + b',"stream_options":{"include_usage":true}}'
CONFIG = Config.from_dict(
    {
        "providers": {"fake": {"kind": "openai", "base_url": "http://fake.invalid/v1", "api_keys": ["sk-up"]}},
        "models": {MODEL: {"provider": "fake"}},
        "exporters": {"prometheus": {"enabled": False}, "log_store": {"enabled": False}},
    },
    environ={},
)
HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer sk-client"),
    (b"user-agent", b"bench/1"),
    (b"accept", b"application/json"),
]


class Canned:
    """A fake-provider answer captured once: status, headers and the body messages as sent."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks


async def capture(body: bytes, chunks: int) -> Canned:
    """Run the fake provider once in-process and keep exactly what it sent."""
    fake = create_fake_provider(FakeProviderConfig(chunks=chunks))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await fake(_scope(), receive, send)
    start = sent[0]
    return Canned(start["status"], list(start["headers"]), [m.get("body", b"") for m in sent[1:] if m.get("body")])


def _scope() -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


class StubUpstreamApp:
    """Answers every request with a canned response, as a provider-like app would (no client)."""

    def __init__(self, plain: Canned, stream: Canned) -> None:
        self.plain = plain
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        canned = self.stream if b'"stream":true' in message.get("body", b"") else self.plain
        await send({"type": "http.response.start", "status": canned.status, "headers": canned.headers})
        for chunk in canned.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class StubPipeline:
    """Stands in for ``ExportPipeline``: ``submit`` keeps the exchange, nothing is exported."""

    def __init__(self) -> None:
        self.last: Any = None
        self.depth = 0

    def submit(self, exchange: Any) -> None:
        self.last = exchange

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> Any:
        for chunk in self._chunks:
            yield chunk


def mock_transport(plain: Canned, stream: Canned) -> httpx.MockTransport:
    """An httpx transport answering from the canned responses (streamed chunk by chunk)."""

    def handler(request: httpx.Request) -> httpx.Response:
        canned = stream if b'"stream":true' in request.content else plain
        return httpx.Response(canned.status, headers=canned.headers, stream=_Chunks(canned.chunks))

    return httpx.MockTransport(handler)


def mock_client(plain: Canned, stream: Canned) -> Any:
    """The gateway's own httpx upstream over :func:`mock_transport` (an internal ``Upstream``: the stack's
    ``client=`` accepts it at run time, as the router does)."""
    upstream: Upstream = build_upstream(transport=mock_transport(plain, stream))
    return upstream


async def _never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def per_request_us(app: App, body: bytes, iterations: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean CPU time per request (process CPU time: robust to a busy machine)."""

    async def send(message: Message) -> None:
        return None

    async def one() -> None:
        pending = True

        async def receive() -> Message:
            nonlocal pending
            if pending:
                pending = False
                return {"type": "http.request", "body": body, "more_body": False}
            return await _never()

        await app(_scope(), receive, send)
        await asyncio.sleep(0)  # let cancelled helper tasks (the router's disconnect watcher) finish

    for _ in range(max(50, iterations // 10)):  # warm-up: caches, lazy imports, pools
        await one()
    results = []
    for _ in range(rounds):
        gc.collect()
        started = time.process_time_ns()
        for _ in range(iterations):
            await one()
        results.append((time.process_time_ns() - started) / iterations / 1000)
    return statistics.median(results)


async def measure_layers(iterations: int, rounds: int) -> list[tuple[str, str, float, float, float]]:
    """(family, layer, non-streamed µs, streamed-20 µs, streamed-100 µs) per configuration."""
    plain = await capture(PLAIN, 20)
    stream20 = await capture(STREAM, 20)
    stream100 = await capture(STREAM, 100)
    up20 = await capture(UPSTREAM_STREAM, 20)
    up100 = await capture(UPSTREAM_STREAM, 100)
    rows: list[tuple[str, str, float, float, float]] = []

    def observing(wrap: Callable[[App], App]) -> Callable[[Canned], App]:
        return lambda stream: wrap(StubUpstreamApp(plain, stream))

    def with_export(app: App) -> App:
        return ExportMiddleware(app, pipeline=StubPipeline())  # type: ignore[arg-type]

    observing_configs: list[tuple[str, Callable[[App], App]]] = [
        ("baseline: stub app alone", lambda app: app),
        ("TraceContextMiddleware", lambda app: TraceContextMiddleware(app, config=CONFIG)),
        ("ExportMiddleware", with_export),
        ("AccountingMiddleware", lambda app: AccountingMiddleware(app, config=CONFIG)),
        (
            "trace + export + accounting",
            lambda app: TraceContextMiddleware(with_export(AccountingMiddleware(app, config=CONFIG)), config=CONFIG),
        ),
    ]
    for name, wrap in observing_configs:
        build = observing(wrap)
        figures = [
            await per_request_us(build(stream20), PLAIN, iterations, rounds),
            await per_request_us(build(stream20), STREAM, iterations // 2, rounds),
            await per_request_us(build(stream100), STREAM, iterations // 8, rounds),
        ]
        rows.append(("observe (stub app)", name, figures[0], figures[1], figures[2]))

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the router should have answered")

    def routing(kind: str, up_stream: Canned, client_stream: Canned) -> App:
        if kind == "bare":
            proxy = HttpxProxy("http://fake.invalid")
            proxy.client = httpx.AsyncClient(transport=mock_transport(plain, client_stream))
            return proxy
        client = mock_client(plain, up_stream)
        if kind == "router":
            return RouterMiddleware(not_found, config=CONFIG, client=client)
        exporters = Exporters(StubPipeline(), None, None, None)  # type: ignore[arg-type]
        return LLMObservability(not_found, config=CONFIG, client=client, exporters=exporters)

    for kind, name in (
        ("bare", "baseline: bare httpx pass-through (mock transport)"),
        ("router", "RouterMiddleware"),
        ("stack", "LLMObservability (full stack)"),
    ):
        figures = [
            await per_request_us(routing(kind, up20, stream20), PLAIN, iterations, rounds),
            await per_request_us(routing(kind, up20, stream20), STREAM, iterations // 2, rounds),
            await per_request_us(routing(kind, up100, stream100), STREAM, iterations // 8, rounds),
        ]
        rows.append(("route (httpx MockTransport)", name, figures[0], figures[1], figures[2]))
    return rows


async def measure_export(records: int) -> list[tuple[str, float]]:
    """Export-worker CPU per record: record building + pricing, and each sink's ``export()`` share."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    from llm_obs_middleware.config.settings import LogStoreConfig, OTLPConfig
    from llm_obs_middleware.exporters.logstore import open_log_store
    from llm_obs_middleware.exporters.otlp.encoding import SpanEncoder
    from llm_obs_middleware.exporters.otlp.traces import REPEATING_ATTRIBUTES, OTLPSink
    from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink
    from llm_obs_middleware.pricing.genai import GenAIPricesSource
    from llm_obs_middleware.records.build import build_record

    plain = await capture(PLAIN, 20)
    up20 = await capture(UPSTREAM_STREAM, 20)
    pipeline = StubPipeline()
    stack = LLMObservability(
        StubUpstreamApp(plain, up20),
        config=CONFIG,
        client=mock_client(plain, up20),
        exporters=Exporters(pipeline, None, None, None),  # type: ignore[arg-type]
    )
    exchanges = []
    for body in (PLAIN, STREAM) * (records // 2):
        await _one_call(stack, body)
        exchanges.append(pipeline.last)
    prices = GenAIPricesSource()
    prices.preload()
    rows: list[tuple[str, float]] = []

    async def timed(name: str, fn: Callable[[], Awaitable[object]], count: int) -> None:
        await fn()  # warm
        figures = []
        for _ in range(3):
            started = time.process_time_ns()
            await fn()
            figures.append((time.process_time_ns() - started) / count / 1000)
        rows.append((name, statistics.median(figures)))

    async def build(source: Any) -> object:
        return [build_record(e, source) for e in exchanges]

    await timed("build_record (no price)", lambda: build(None), len(exchanges))
    await timed("build_record + genai-prices cost", lambda: build(prices), len(exchanges))
    built = [build_record(e, prices) for e in exchanges]
    batches = [built[i : i + 256] for i in range(0, len(built), 256)]

    prometheus = PrometheusSink(CollectorRegistry())

    async def to_prometheus() -> object:
        for batch in batches:
            await prometheus.export(batch)
        return None

    await timed("Prometheus sink: export()", to_prometheus, len(built))
    memory = InMemorySpanExporter()
    otlp = OTLPSink(OTLPConfig(endpoint="http://127.0.0.1:1"), service_name="bench", span_exporter=memory)

    async def to_otlp() -> object:
        memory.clear()
        for batch in batches:
            await otlp.export(batch)
        return None

    await timed("OTLP sink: export() to an in-memory exporter (spans, no encoding)", to_otlp, len(built))
    spans = memory.get_finished_spans()
    encoder = SpanEncoder(REPEATING_ATTRIBUTES)

    async def stock_encode() -> object:
        return encode_spans(spans).SerializeToString()

    async def sink_encode() -> object:  # what the sink's own export path runs before sending the bytes
        return encoder.encode(spans).SerializeToString()

    if spans:
        # Both encoders on the same spans, per span and per record ("per span" rows are left out of the total).
        await timed("OTLP protobuf encoding, stock encode_spans, per span", stock_encode, len(spans))
        await timed("OTLP protobuf encoding, stock encode_spans, per record", stock_encode, len(built))
        await timed("OTLP protobuf encoding, sink's SpanEncoder, per span", sink_encode, len(spans))
        await timed("OTLP protobuf encoding, sink's SpanEncoder (used), per record", sink_encode, len(built))
    await otlp.close()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_log_store(LogStoreConfig(url=f"sqlite:///{Path(tmp) / 'bench.db'}"))
        await store.start()
        counter = iter(range(10**9))

        async def to_sqlite() -> object:
            for batch in batches:
                await store.export([_with_id(r, next(counter)) for r in batch])  # new rows every round
            return None

        await timed("SQLite log store: export() (batches of 256, in a thread)", to_sqlite, len(built))
        await store.close()
    await stack.upstream.aclose()
    return rows


def _with_id(record: Any, number: int) -> Any:
    import msgspec

    return msgspec.structs.replace(record, request_id=f"bench-{number}")


async def _one_call(app: App, body: bytes) -> None:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await _never()

    async def send(message: Message) -> None:
        return None

    await app(_scope(), receive, send)
    await asyncio.sleep(0)


async def profile_stack(mode: str, iterations: int) -> str:
    """pyinstrument's view of ``iterations`` requests through ``LLMObservability`` (mock upstream)."""
    from pyinstrument import Profiler

    plain = await capture(PLAIN, 20)
    up20 = await capture(UPSTREAM_STREAM, 20)
    exporters = Exporters(StubPipeline(), None, None, None)  # type: ignore[arg-type]

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the router should have answered")

    stack = LLMObservability(not_found, config=CONFIG, client=mock_client(plain, up20), exporters=exporters)
    body = PLAIN if mode == "plain" else STREAM
    for _ in range(200):
        await _one_call(stack, body)
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    for _ in range(iterations):
        await _one_call(stack, body)
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=True, short_mode=False))


def render(layers: list[tuple[str, str, float, float, float]], export: list[tuple[str, float]]) -> str:
    lines = [
        "| family | layer | non-streamed µs/req | added | streamed (20 chunks) µs/req | added | added µs per chunk |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    baseline: tuple[float, float, float] | None = None
    for family, name, plain, s20, s100 in layers:
        if name.startswith("baseline"):
            baseline = (plain, s20, s100)
            lines.append(f"| {family} | {name} | {plain:.1f} | | {s20:.1f} | | ({(s100 - s20) / 80:.2f} µs/chunk) |")
            continue
        assert baseline is not None
        chunk = ((s100 - s20) - (baseline[2] - baseline[1])) / 80
        lines.append(
            f"| {family} | {name} | {plain:.1f} | {plain - baseline[0]:+.1f} | {s20:.1f} | "
            f"{s20 - baseline[1]:+.1f} | {chunk:+.2f} |"
        )
    lines += ["", "| export worker, per record | µs |", "|---|---:|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in export]
    # The cost row includes the build; the stock encoder is shown for comparison only (the sink uses its own).
    total = sum(value for name, value in export if _in_total(name))
    lines.append(f"| **all sinks + cost, per record** | **{total:.1f}** |")
    return "\n".join(lines) + "\n"


def _in_total(row: str) -> bool:
    return row != "build_record (no price)" and "per span" not in row and "stock encode_spans" not in row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4000, help="non-streamed requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run (few iterations)")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    parser.add_argument(
        "--profile",
        choices=("plain", "stream"),
        help="instead: profile the full stack (mock upstream) with pyinstrument and print where the time goes",
    )
    args = parser.parse_args()
    if args.profile:
        sys.stdout.write(run_on_loop(lambda: profile_stack(args.profile, args.iterations)))
        return
    if args.quick:
        args.iterations, args.rounds = 400, 2

    async def run() -> str:
        layers = await measure_layers(args.iterations, args.rounds)
        export = await measure_export(512 if args.quick else 2048)
        return render(layers, export)

    text = run_on_loop(run)
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)


def run_on_loop(factory: Callable[[], Awaitable[str]]) -> str:
    """Run on uvloop when installed, as uvicorn would."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    return uvloop.run(factory())  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
