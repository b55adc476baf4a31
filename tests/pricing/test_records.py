"""Cost on records: streamed and plain versions of an exchange cost the same, estimates are flagged,
and pricing happens in the export worker, never on the request path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest
import tiktoken
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, LLMObservability
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import PricingConfig
from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink
from llm_obs_middleware.pricing import ChainedPriceSource, build_price_source
from llm_obs_middleware.providers.openai.observe import ChatJSONObserver, ChatStreamObserver
from llm_obs_middleware.records import estimate as _estimate
from llm_obs_middleware.records.build import build_record
from llm_obs_middleware.records.estimate import TokenEstimator
from llm_obs_middleware.records.schema import Cost, LLMRecord, NormalizedResponse, Usage
from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider

from ..conftest import SHARED_FIXTURES
from ..exporters.conftest import make_record

CHAT = SHARED_FIXTURES / "openai_chat"
AUTH = {"authorization": "Bearer sk-client"}
NOW_NS = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp() * 1e9)
# OpenAI gpt-4.1-mini: $0.40 input, $0.10 cached input, $1.60 output per million tokens
# (genai-prices 0.2.3 data.py openai "gpt-4.1-mini"; https://openai.com/api/pricing/).
# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output (same sources).


@pytest.fixture(scope="module")
def prices() -> ChainedPriceSource:
    source = build_price_source(PricingConfig())
    source.preload()
    return source


def _exchange(request: bytes, response: bytes, *, streamed: bool, split: int = 7) -> Exchange:
    """The exchange the accounting layer would hand over, with the response fed through our observer."""
    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    exchange.start_unix_nano = NOW_NS
    exchange.is_llm = True
    exchange.api = "openai.chat_completions"
    exchange.operation = "chat"
    exchange.provider = exchange.provider_kind = "openai"
    exchange.requested_model = json.loads(request)["model"]
    exchange.status = 200
    exchange.streamed = streamed
    exchange.body = request
    observer = ChatStreamObserver(exchange, capture=False) if streamed else ChatJSONObserver(capture=False)
    for start in range(0, len(response), split):  # chunk boundaries anywhere, as on the wire
        observer.feed(response[start : start + split], start)
    exchange.response = observer.finish()
    return exchange


def _requests() -> tuple[bytes, bytes]:
    plain = (CHAT / "request.json").read_bytes()
    streamed = json.loads(plain)
    streamed.update(stream=True, stream_options={"include_usage": True})  # expected.json stream_request_overrides
    return plain, json.dumps(streamed).encode()


def _without_usage(stream: bytes) -> bytes:
    events = [event for event in stream.split(b"\n\n") if b'"usage":{' not in event]
    return b"\n\n".join(events)


def _assert_same_cost(plain: Cost | None, streamed: Cost | None) -> None:
    assert plain is not None and streamed is not None
    for field in ("input_usd", "cache_read_usd", "cache_write_usd", "output_usd", "other_usd", "total_usd"):
        assert getattr(plain, field) == pytest.approx(getattr(streamed, field), rel=1e-12), field


def test_fixture_costs_match_hand_figures(prices: ChainedPriceSource) -> None:
    plain_request, stream_request = _requests()
    plain = build_record(_exchange(plain_request, (CHAT / "response.json").read_bytes(), streamed=False), prices)
    streamed = build_record(_exchange(stream_request, (CHAT / "stream.txt").read_bytes(), streamed=True), prices)
    assert plain.cost is not None and streamed.cost is not None
    # response.json: 1,287 input of which 1,152 cached, 58 output.
    assert plain.cost.total_usd == pytest.approx((135 * 0.40 + 1_152 * 0.10 + 58 * 1.60) / 1e6)  # $0.000262
    # stream.txt (a warmer cache on purpose, see the fixtures' README): 1,280 of 1,287 cached.
    assert streamed.cost.total_usd == pytest.approx((7 * 0.40 + 1_280 * 0.10 + 58 * 1.60) / 1e6)  # $0.0002236
    assert not plain.estimated and not streamed.estimated


def test_streamed_and_plain_versions_of_one_exchange_cost_the_same(prices: ChainedPriceSource) -> None:
    plain_request, stream_request = _requests()
    stream = (CHAT / "stream.txt").read_bytes().replace(b'"cached_tokens":1280', b'"cached_tokens":1152')
    plain = build_record(_exchange(plain_request, (CHAT / "response.json").read_bytes(), streamed=False), prices)
    streamed = build_record(_exchange(stream_request, stream, streamed=True), prices)
    assert plain.usage == streamed.usage
    _assert_same_cost(plain.cost, streamed.cost)
    assert plain.cost is not None and plain.cost.total_usd == pytest.approx(0.000262)


@pytest.mark.parametrize("tiktoken_path", [False, True], ids=["heuristic", "tiktoken"])
def test_estimated_streamed_and_plain_versions_cost_the_same(prices: ChainedPriceSource, tiktoken_path: bool) -> None:
    ranks = {bytes([byte]): byte for byte in range(256)}
    encoding = tiktoken.Encoding("bytes", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={})
    estimator = TokenEstimator(encodings={"o200k_base": encoding} if tiktoken_path else None, load_encodings=False)
    plain_request, stream_request = _requests()
    body = json.loads((CHAT / "response.json").read_bytes())
    del body["usage"]
    plain_exchange = _exchange(plain_request, json.dumps(body).encode(), streamed=False)
    stream_exchange = _exchange(stream_request, _without_usage((CHAT / "stream.txt").read_bytes()), streamed=True)
    assert plain_exchange.response is not None and plain_exchange.response.usage is None
    assert stream_exchange.response is not None and stream_exchange.response.usage is None
    # Two tool calls: "get_weather" twice, {"city":"Paris","unit":"celsius"} and {"city":"Nice","unit":"celsius"}.
    assert plain_exchange.response.output_chars == stream_exchange.response.output_chars == 2 * 11 + 33 + 32
    plain = build_record(plain_exchange, prices, estimator=estimator)
    streamed = build_record(stream_exchange, prices, estimator=estimator)
    assert plain.estimated and streamed.estimated
    assert plain.usage == streamed.usage
    assert plain.usage is not None and plain.usage.input_tokens and plain.usage.output_tokens
    if tiktoken_path:  # byte-level encoding: one token per byte of each tool name and arguments
        assert plain.usage.output_tokens == 2 * 11 + 33 + 32
    else:
        assert plain.usage.output_tokens == 22  # ceil(87 / 4)
    _assert_same_cost(plain.cost, streamed.cost)
    assert plain.cost is not None
    assert plain.cost.total_usd == pytest.approx(
        (plain.usage.input_tokens * 0.40 + plain.usage.output_tokens * 1.60) / 1e6
    )


def test_no_estimate_for_failed_exchanges_or_reported_usage(prices: ChainedPriceSource) -> None:
    plain_request, _ = _requests()
    failed = _exchange(plain_request, b'{"error": {"message": "boom"}}', streamed=False)
    failed.status = 500
    record = build_record(failed, prices, estimator=TokenEstimator(load_encodings=False))
    assert not record.estimated and record.usage is None and record.cost is None


def test_estimated_records_are_labelled_in_prometheus() -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    usage = Usage(input_tokens=100, output_tokens=20)
    sink.observe(make_record(usage=usage, cost=Cost(total_usd=0.5)))
    sink.observe(make_record(usage=usage, cost=Cost(total_usd=0.25), estimated=True))
    sink.observe(make_record(usage=usage, cost=Cost(total_usd=0.25), estimated=True))
    labels = {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}
    series = {**labels, "operation": "chat"}

    def value(name: str, **names: str) -> float | None:
        return registry.get_sample_value(name, names)

    assert value("llm_obs_tokens_total", **series, type="input", estimated="false") == 100
    assert value("llm_obs_tokens_total", **series, type="input", estimated="true") == 200
    assert value("llm_obs_tokens_total", **series, type="output", estimated="true") == 40
    assert value("llm_obs_cost_usd_total", **labels, estimated="false") == pytest.approx(0.5)
    assert value("llm_obs_cost_usd_total", **labels, estimated="true") == pytest.approx(0.5)
    assert value("llm_obs_requests_total", **series, status_class="2xx") == 3


class _RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.records: list[LLMRecord] = []

    async def start(self) -> None:
        """Nothing to open."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        self.records.extend(records)

    async def close(self) -> None:
        """Nothing to flush."""


class _TaskRecordingPrices:
    """Prices like the default chain and notes which asyncio task asked."""

    def __init__(self, inner: ChainedPriceSource) -> None:
        self.inner = inner
        self.tasks: list[str] = []

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None:
        task = asyncio.current_task()
        self.tasks.append(task.get_name() if task else "no task")
        return self.inner.price(provider, model, usage, timestamp=timestamp)


async def test_through_the_stack_streamed_and_plain_cost_the_same_and_are_priced_in_the_worker(
    prices: ChainedPriceSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_estimate, "_default", TokenEstimator(load_encodings=False))  # the heuristic, deterministic
    fake = create_fake_provider(FakeProviderConfig(prompt_tokens=2_000, cached_tokens=1_500, completion_tokens=300))
    recording = _TaskRecordingPrices(prices)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        config = Config.from_dict(
            {
                "providers": {"openai": {"kind": "openai", "base_url": "http://fake.test/v1", "api_keys": ["k"]}},
                "route_prefix": "/llm",
                "default_provider": "openai",
                "exporters": {"log_store": {"enabled": False}, "prometheus": {"enabled": False}},
            }
        )
        stack = LLMObservability(fake, config=config, client=upstream, price_source=recording)
        sink = _RecordingSink()
        stack.exporters.pipeline.sinks.append(sink)
        messages = [{"role": "user", "content": "hi"}]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack), base_url="http://app.test", headers=AUTH
        ) as client:
            for path in ("/llm/v1/chat/completions", "/v1/chat/completions"):  # routed, and the app's own endpoint
                plain = await client.post(path, json={"model": "gpt-4o-mini", "messages": messages})
                streamed = await client.post(path, json={"model": "gpt-4o-mini", "messages": messages, "stream": True})
                assert plain.status_code == streamed.status_code == 200
        await stack.exporters.pipeline.flush()
        await stack.exporters.pipeline.close()
    routed_plain, routed_stream, own_plain, own_stream = sink.records
    assert routed_stream.streamed and own_stream.streamed and not routed_plain.streamed
    # Routed: the router asks upstream for stream usage, so both report it: 500 uncached, 1,500 cached, 300 out.
    hand = (500 * 0.15 + 1_500 * 0.075 + 300 * 0.60) / 1e6  # $0.0003675
    for record in (routed_plain, routed_stream, own_plain):
        assert not record.estimated
        assert record.cost is not None and record.cost.total_usd == pytest.approx(hand)
    _assert_same_cost(routed_plain.cost, routed_stream.cost)
    # The app's own endpoint streamed without stream_options: no usage came, so it is estimated.
    assert own_stream.estimated and own_stream.usage is not None and own_stream.cost is not None
    # "hi": ceil(2 / 4) + 4 for the message + 3 for the reply; "Hello from the fake provider": ceil(28 / 4).
    assert own_stream.usage == Usage(input_tokens=8, output_tokens=7, total_tokens=15)
    assert own_stream.cost.total_usd == pytest.approx((8 * 0.15 + 7 * 0.60) / 1e6)
    # Pricing ran four times, always in the export worker's task, never in a request's.
    assert recording.tasks == ["llm-obs-export"] * 4


def test_response_without_output_chars_defaults_to_zero() -> None:
    assert NormalizedResponse().output_chars == 0
