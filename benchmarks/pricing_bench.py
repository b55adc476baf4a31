"""The cost step: median time to price one record, and proof that the request path never prices.

    .venv/bin/python benchmarks/pricing_bench.py            # ~10 s
    .venv/bin/python benchmarks/pricing_bench.py --json out.json

1. **Cost step, cached.** The default price source (``pricing.overrides`` then genai-prices) prices a
   mix of records: OpenAI with cached input, an o-series model, Anthropic with 5-minute and 1-hour
   cache writes, Gemini above its long-context tier, a Bedrock id with a region prefix, DeepSeek
   (time-of-day prices), an embedding model, an override-table model and an unknown model (a cached
   miss). Each model is resolved once first (that first lookup is reported apart), then ``price()``
   is timed in batches; the figure is the median over batches of the time per call. The same is
   measured for the whole ``build_record`` (pricing included) and for the token estimate of a record
   without usage (heuristic; tiktoken needs its encoding files).
2. **Request path.** Plain and streamed requests go through ``LLMObservability`` around the fake
   provider (routed, and the app's own endpoint) with a price source that records the asyncio task
   calling it. Every call must come from the export worker's task (``llm-obs-export``), one per
   record, none from a request.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from llm_obs_middleware import Config, LLMObservability
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import PricingConfig
from llm_obs_middleware.pricing import ChainedPriceSource, build_price_source
from llm_obs_middleware.providers.openai.observe import ChatJSONObserver
from llm_obs_middleware.records.build import build_record
from llm_obs_middleware.records.estimate import TokenEstimator
from llm_obs_middleware.records.schema import Cost, LLMRecord, Usage
from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
CASES: list[tuple[str, str, str, Usage]] = [
    (
        "openai cached input",
        "openai",
        "gpt-4o-2024-08-06",
        Usage(input_tokens=10_000, cache_read_tokens=6_144, output_tokens=500),
    ),
    ("o-series reasoning", "openai", "o4-mini", Usage(input_tokens=2_000, output_tokens=6_000, reasoning_tokens=5_000)),
    (
        "anthropic 5m+1h writes",
        "anthropic",
        "claude-sonnet-4-20250514",
        Usage(
            input_tokens=15_000,
            cache_read_tokens=10_000,
            cache_write_tokens=3_000,
            cache_write_1h_tokens=1_000,
            output_tokens=800,
        ),
    ),
    (
        "gemini >200k tier",
        "gemini",
        "gemini-2.5-pro",
        Usage(input_tokens=250_000, output_tokens=4_000, reasoning_tokens=3_000),
    ),
    (
        "bedrock region prefix",
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        Usage(input_tokens=20_000, output_tokens=1_000),
    ),
    (
        "deepseek time-of-day",
        "deepseek",
        "deepseek-chat",
        Usage(input_tokens=1_000_000, cache_read_tokens=800_000, output_tokens=10_000),
    ),
    ("embedding", "openai", "text-embedding-3-small", Usage(input_tokens=12_345)),
    ("override table", "openai", "ft:gpt-4o-mini:acme::x1", Usage(input_tokens=2_000, output_tokens=100)),
    ("unknown (cached miss)", "openai", "no-such-model", Usage(input_tokens=10, output_tokens=10)),
]
OVERRIDES = {"openai": {"ft:gpt-4o-mini:acme::x1": {"input": 0.3, "output": 1.2}}}


def _median_ns(call: Callable[[], object], per_batch: int, batches: int) -> float:
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter_ns() - start) / per_batch)
    return statistics.median(samples)


def _exchange(usage: bool) -> Exchange:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello. " * 40}]}).encode()
    usage_json = ',"usage":{"prompt_tokens":120,"completion_tokens":30,"prompt_tokens_details":{"cached_tokens":64}}'
    response = (
        b'{"id":"c1","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"'
        + b"Hello there. " * 10
        + b'"},"finish_reason":"stop"}]'
        + (usage_json.encode() if usage else b"")
        + b"}"
    )
    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    exchange.is_llm = True
    exchange.operation = "chat"
    exchange.provider = exchange.provider_kind = "openai"
    exchange.status = 200
    exchange.body = body
    observer = ChatJSONObserver(capture=False)
    observer.feed(response, 0)
    exchange.response = observer.finish()
    return exchange


def cost_step(per_batch: int, batches: int) -> dict[str, Any]:
    source = build_price_source(PricingConfig(overrides=OVERRIDES))
    start = time.perf_counter()
    source.preload()
    preload_s = time.perf_counter() - start
    results: dict[str, Any] = {"preload_s": preload_s, "cases": {}}
    for name, provider, model, usage in CASES:
        start_ns = time.perf_counter_ns()
        source.price(provider, model, usage, timestamp=NOON)  # the one resolution, cached from here on
        first_us = (time.perf_counter_ns() - start_ns) / 1000
        median = _median_ns(functools.partial(source.price, provider, model, usage, timestamp=NOON), per_batch, batches)
        results["cases"][name] = {"first_call_us": first_us, "median_ns": median}
    everything = [(provider, model, usage) for _, provider, model, usage in CASES]

    def mixed() -> None:
        for provider, model, usage in everything:
            source.price(provider, model, usage, timestamp=NOON)

    results["mixed_median_ns"] = _median_ns(mixed, max(1, per_batch // len(everything)), batches) / len(everything)
    with_usage, without_usage = _exchange(usage=True), _exchange(usage=False)
    estimator = TokenEstimator(load_encodings=False)
    results["build_record_median_ns"] = _median_ns(lambda: build_record(with_usage, source), per_batch, batches)
    results["build_record_estimated_median_ns"] = _median_ns(
        lambda: build_record(without_usage, source, estimator=estimator), per_batch // 4 or 1, batches
    )
    results["build_record_unpriced_median_ns"] = _median_ns(lambda: build_record(with_usage, None), per_batch, batches)
    return results


class _TaskRecordingPrices:
    def __init__(self, inner: ChainedPriceSource) -> None:
        self.inner = inner
        self.tasks: list[str] = []

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None:
        task = asyncio.current_task()
        self.tasks.append(task.get_name() if task is not None else "<no task>")
        return self.inner.price(provider, model, usage, timestamp=timestamp)


class _CountingSink:
    name = "counting"

    def __init__(self) -> None:
        self.records = 0

    async def start(self) -> None:
        """Nothing to open."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        self.records += len(records)

    async def close(self) -> None:
        """Nothing to flush."""


async def request_path(requests: int) -> dict[str, Any]:
    recording = _TaskRecordingPrices(build_price_source(PricingConfig()))
    fake = create_fake_provider(FakeProviderConfig(prompt_tokens=200, cached_tokens=100, completion_tokens=20))
    config = Config.from_dict(
        {
            "providers": {"openai": {"kind": "openai", "base_url": "http://fake.test/v1", "api_keys": ["k"]}},
            "route_prefix": "/llm",
            "default_provider": "openai",
            "exporters": {"log_store": {"enabled": False}},
        }
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        stack = LLMObservability(fake, config=config, client=upstream, price_source=recording)
        sink = _CountingSink()
        stack.exporters.pipeline.sinks.append(sink)
        transport = httpx.ASGITransport(app=stack)
        headers = {"authorization": "Bearer sk-bench"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:

            async def one(i: int) -> None:
                path = "/llm/v1/chat/completions" if i % 2 else "/v1/chat/completions"
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": i % 4 < 2}
                response = await client.post(path, json=body)
                response.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(requests)))
        await stack.exporters.pipeline.flush()
        await stack.exporters.pipeline.close()
    from_requests = [task for task in recording.tasks if task != "llm-obs-export"]
    return {
        "requests": requests,
        "records": sink.records,
        "price_calls": len(recording.tasks),
        "price_calls_outside_the_export_worker": len(from_requests),
        "ok": not from_requests and len(recording.tasks) == sink.records == requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--per-batch", type=int, default=2_000, help="price() calls per timed batch")
    parser.add_argument("--batches", type=int, default=31, help="timed batches (the median is reported)")
    parser.add_argument("--requests", type=int, default=200, help="requests driven through the stack")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "genai_prices": metadata.version("genai-prices"),
        "cost_step": cost_step(args.per_batch, args.batches),
        "request_path": asyncio.run(request_path(args.requests)),
    }
    cost = results["cost_step"]
    out = sys.stdout.write
    out(
        f"genai-prices {results['genai_prices']}, Python {results['python']}; "
        f"price data loaded in {cost['preload_s']:.2f} s\n\n"
    )
    out(f"{'cost step (cached), per record':<34}{'first call':>12}{'median':>12}\n")
    for name, case in cost["cases"].items():
        out(f"{name:<34}{case['first_call_us']:>9.1f} µs{case['median_ns'] / 1000:>9.2f} µs\n")
    out(f"{'mix of all the above':<34}{'':>12}{cost['mixed_median_ns'] / 1000:>9.2f} µs\n\n")
    out(
        f"build_record, usage reported:      {cost['build_record_median_ns'] / 1000:.2f} µs "
        f"(without pricing: {cost['build_record_unpriced_median_ns'] / 1000:.2f} µs)\n"
    )
    out(f"build_record, usage estimated:     {cost['build_record_estimated_median_ns'] / 1000:.2f} µs (heuristic)\n\n")
    path = results["request_path"]
    out(
        f"request path: {path['requests']} requests, {path['records']} records, {path['price_calls']} price() calls, "
        f"{path['price_calls_outside_the_export_worker']} outside the export worker "
        f"-> {'OK' if path['ok'] else 'FAIL'}\n"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if path["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
