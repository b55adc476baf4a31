"""``llm-obs demo``: the whole stack on loopback in a few seconds, with a summary of what it saw.

Starts the fake provider and a gateway in front of it (Prometheus on, a SQLite log store in a
temporary directory, no OTLP), each under uvicorn in a background thread; sends a short mix of
traffic through the gateway with the official ``openai`` SDK (plain httpx when the SDK is not
installed): plain and streamed chats, embeddings and one request the provider fails with a 500;
then waits for the records to reach ``/logs`` and summarises them.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import msgspec
from prometheus_client import CollectorRegistry

from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.gateway.standalone import create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer

__all__ = ["DEMO_FAKE_CONFIG", "MAX_REQUESTS", "DemoSummary", "run_demo", "summarize", "traffic_plan"]

MAX_REQUESTS = 1000
"""The most records one ``GET /logs`` returns, so the summary can see every request."""

DEMO_FAKE_CONFIG = FakeProviderConfig(latency_s=0.005, ttft_s=0.02, chunk_interval_s=0.005, chunks=8, prompt_tokens=24)
"""The fake provider's behaviour in the demo: a little latency so the numbers look like a real API."""

_MODELS = ("gpt-4o-mini", "gpt-4o")
_EMBEDDING_MODEL = "text-embedding-3-small"
_FAILING_MODEL = "fail-500-model"
_MESSAGES: Any = [{"role": "user", "content": "Say hello in five words."}]
_INPUTS = ("The soup was cold but the staff were lovely.", "Order #4471 arrived two days late.")


class DemoSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What the demo's records add up to (computed from the ``/logs`` JSON)."""

    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    p50_latency_ms: float
    p99_latency_ms: float
    p50_ttft_ms: float | None
    streamed: int
    gateway_url: str = ""
    metrics_url: str = ""
    logs_url: str = ""


def traffic_plan(requests: int) -> list[tuple[str, str]]:
    """The ``(kind, model)`` pairs the demo sends: chats, streams and embeddings in turn, and exactly
    one request (in the middle) to a model the fake provider fails with a 500."""
    if not 2 <= requests <= MAX_REQUESTS:
        raise ValueError(f"the demo sends from 2 to {MAX_REQUESTS} requests, not {requests}")
    kinds = ("chat", "stream", "embeddings")
    plan: list[tuple[str, str]] = []
    for i in range(requests - 1):
        kind = kinds[i % 3]
        plan.append((kind, _EMBEDDING_MODEL if kind == "embeddings" else _MODELS[(i // 3) % 2]))
    plan.insert(requests // 2, ("chat", _FAILING_MODEL))
    return plan


def summarize(records: list[dict[str, Any]]) -> DemoSummary:
    """Add up ``/logs`` records: counts, tokens, cost, and latency/TTFT percentiles in milliseconds."""
    durations = sorted(1000 * r["timing"]["duration_s"] for r in records if "timing" in r)
    ttfts = sorted(
        1000 * r["timing"]["time_to_first_token_s"]
        for r in records
        if r.get("timing", {}).get("time_to_first_token_s") is not None
    )
    usage = [r.get("usage") or {} for r in records]
    return DemoSummary(
        requests=len(records),
        errors=sum(1 for r in records if not 200 <= r.get("status", 0) < 400),
        input_tokens=sum(u.get("input_tokens") or 0 for u in usage),
        output_tokens=sum(u.get("output_tokens") or 0 for u in usage),
        cost_usd=sum((r.get("cost") or {}).get("total_usd", 0.0) for r in records),
        p50_latency_ms=_percentile(durations, 50),
        p99_latency_ms=_percentile(durations, 99),
        p50_ttft_ms=_percentile(ttfts, 50) if ttfts else None,
        streamed=sum(1 for r in records if r.get("streamed")),
    )


def run_demo(
    *,
    port: int = 0,
    requests: int = 12,
    keep_running: bool = False,
    out: IO[str] | None = None,
    progress: IO[str] | None = None,
    flush_timeout: float = 10.0,
) -> DemoSummary:
    """Run the demo and write its summary to ``out`` (progress lines go to ``progress``).

    Args:
        port: gateway port (``0`` picks a free one).
        requests: how many requests to send (2 to ``MAX_REQUESTS``; exactly one of them fails).
        keep_running: leave both servers up after the summary until Ctrl-C.
        out: where the summary goes (default ``sys.stdout``).
        progress: where a line per request goes (default ``sys.stderr``).
        flush_timeout: seconds to wait for every record to reach ``/logs``.
    """
    out = sys.stdout if out is None else out
    progress = sys.stderr if progress is None else progress
    plan = traffic_plan(requests)
    width = len(str(requests))
    with tempfile.TemporaryDirectory(prefix="llm-obs-demo-", ignore_cleanup_errors=True) as tmp:
        with FakeProviderServer(DEMO_FAKE_CONFIG) as fake:
            config = _demo_config(fake.url, Path(tmp) / "demo.db")
            # A registry of its own, so the demo can run next to (or after) another gateway in one process.
            gateway = create_gateway(config, registry=CollectorRegistry())
            with BackgroundServer(gateway, host="127.0.0.1", port=port) as server:
                client = _client(server.url + "/v1")
                try:
                    for number, (kind, model) in enumerate(plan, 1):
                        started = time.perf_counter()
                        status = client.send(kind, model)
                        elapsed = 1000 * (time.perf_counter() - started)
                        progress.write(
                            f"[{number:>{width}}/{requests}] {kind:<10} {model:<22} {status}  {elapsed:7.1f} ms\n"
                        )
                finally:
                    client.close()
                records = _wait_for_records(
                    f"{server.url}/logs?limit={MAX_REQUESTS}", len(plan), flush_timeout, progress
                )
                summary = msgspec.structs.replace(
                    summarize(records),
                    gateway_url=server.url,
                    metrics_url=server.url + "/metrics",
                    logs_url=server.url + "/logs",
                )
                out.write(_format(summary))
                out.flush()
                if keep_running:
                    _wait_for_interrupt(out)
    return summary


def _demo_config(fake_url: str, db_path: Path) -> Config:
    route = {"provider": "openai"}
    return Config.from_dict(
        {
            "providers": {"openai": {"kind": "openai", "base_url": fake_url, "api_keys": ["sk-demo-upstream"]}},
            "models": {name: route for name in (*_MODELS, _EMBEDDING_MODEL, _FAILING_MODEL)},
            "service_name": "llm-obs-demo",
            "exporters": {"prometheus": {"enabled": True}, "log_store": {"url": f"sqlite:///{db_path}"}},
        },
        environ={},
    )


class _Client(Protocol):
    def send(self, kind: str, model: str) -> int: ...

    def close(self) -> None: ...


class _OpenAIClient:
    """Sends the demo requests with the official SDK, as a real service would."""

    def __init__(self, base_url: str) -> None:
        import openai

        self._status_error = openai.APIStatusError
        # No SDK retries: one demo request must be exactly one gateway record.
        self._client = openai.OpenAI(base_url=base_url, api_key="sk-demo-client", max_retries=0, timeout=10.0)

    def send(self, kind: str, model: str) -> int:
        chat = self._client.chat.completions
        try:
            if kind == "embeddings":
                self._client.embeddings.create(model=model, input=list(_INPUTS))
            elif kind == "stream":
                stream = chat.create(
                    model=model, messages=_MESSAGES, stream=True, stream_options={"include_usage": True}
                )
                for _ in stream:
                    pass
            else:
                chat.create(model=model, messages=_MESSAGES)
        except self._status_error as exc:
            return exc.status_code
        return 200

    def close(self) -> None:
        self._client.close()


class _HttpxClient:
    """The same requests as raw HTTP, for when the ``openai`` package is not installed."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, headers={"authorization": "Bearer sk-demo-client"}, timeout=10)

    def send(self, kind: str, model: str) -> int:
        if kind == "embeddings":
            return self._client.post("/embeddings", json={"model": model, "input": list(_INPUTS)}).status_code
        body: dict[str, Any] = {"model": model, "messages": _MESSAGES}
        if kind == "stream":
            body.update(stream=True, stream_options={"include_usage": True})
        with self._client.stream("POST", "/chat/completions", json=body) as response:
            for _ in response.iter_bytes():
                pass
            return response.status_code

    def close(self) -> None:
        self._client.close()


def _client(base_url: str) -> _Client:
    try:
        return _OpenAIClient(base_url)
    except ImportError:
        return _HttpxClient(base_url)


def _wait_for_records(url: str, expected: int, timeout: float, progress: IO[str]) -> list[dict[str, Any]]:
    # Records are exported off the request path, so the last ones may still be queued: poll.
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            response = client.get(url)
            if response.status_code == 200:
                payload = response.json()
                records = payload.get("data", []) if isinstance(payload, dict) else payload
            if len(records) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    if len(records) < expected:
        progress.write(f"warning: only {len(records)} of {expected} records reached /logs in {timeout:.0f} s\n")
    return records


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile (0.0 for no values)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _format(summary: DemoSummary) -> str:
    ttft = "n/a" if summary.p50_ttft_ms is None else f"{summary.p50_ttft_ms:.1f} ms"
    return (
        f"\nllm-obs demo: gateway at {summary.gateway_url}\n"
        f"  metrics    {summary.metrics_url}\n"
        f"  logs       {summary.logs_url}\n\n"
        f"  requests   {summary.requests} ({summary.streamed} streamed)\n"
        f"  errors     {summary.errors}\n"
        f"  tokens     {summary.input_tokens} in / {summary.output_tokens} out\n"
        f"  cost       ${summary.cost_usd:.6f}\n"
        f"  latency    p50 {summary.p50_latency_ms:.1f} ms / p99 {summary.p99_latency_ms:.1f} ms\n"
        f"  TTFT       p50 {ttft}\n"
    )


def _wait_for_interrupt(out: IO[str]) -> None:
    out.write("\nServers are running; press Ctrl-C to stop.\n")
    out.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out.write("\nstopping\n")
