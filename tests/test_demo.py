"""``llm-obs demo``: the whole stack on loopback; its summary must add up to the fake's usage."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

from llm_obs_middleware.gateway import demo
from llm_obs_middleware.testing import BackgroundServer


def test_traffic_plan_has_exactly_one_failure() -> None:
    for n in range(2, 20):
        plan = demo.traffic_plan(n)
        assert len(plan) == n
        assert [model for _, model in plan].count("fail-500-model") == 1
        assert {kind for kind, _ in plan} <= {"chat", "stream", "embeddings"}
    assert {kind for kind, _ in demo.traffic_plan(6)} == {"chat", "stream", "embeddings"}
    for bad in (1, demo.MAX_REQUESTS + 1):
        with pytest.raises(ValueError, match="from 2 to"):
            demo.traffic_plan(bad)


def test_summarize_records() -> None:
    def record(status: int, duration: float, **extra: Any) -> dict[str, Any]:
        return {"status": status, "timing": {"duration_s": duration, **extra.pop("timing", {})}, **extra}

    records = [
        record(200, 0.010, usage={"input_tokens": 10, "output_tokens": 4}, cost={"total_usd": 0.5}),
        record(200, 0.030, usage={"input_tokens": 10}, streamed=True, timing={"time_to_first_token_s": 0.02}),
        record(500, 0.020, usage=None),
        record(0, 0.040),
    ]
    summary = demo.summarize(records)
    assert (summary.requests, summary.errors, summary.streamed) == (4, 2, 1)
    assert (summary.input_tokens, summary.output_tokens, summary.cost_usd) == (20, 4, 0.5)
    assert summary.p50_latency_ms == pytest.approx(20.0)
    assert summary.p99_latency_ms == pytest.approx(40.0)
    assert summary.p50_ttft_ms == pytest.approx(20.0)
    empty = demo.summarize([])
    assert (empty.requests, empty.p50_latency_ms, empty.p50_ttft_ms) == (0, 0.0, None)


def test_run_demo_end_to_end() -> None:
    requests = 8
    out, progress = io.StringIO(), io.StringIO()
    summary = demo.run_demo(requests=requests, out=out, progress=progress)

    plan = demo.traffic_plan(requests)
    succeeded = [kind for kind, model in plan if not model.startswith("fail-")]
    chats = sum(1 for kind in succeeded if kind in ("chat", "stream"))
    fake = demo.DEMO_FAKE_CONFIG
    completion = fake.chunks if fake.completion_tokens is None else fake.completion_tokens

    assert summary.requests == requests
    assert summary.errors == 1
    assert summary.input_tokens == fake.prompt_tokens * len(succeeded)
    assert summary.output_tokens == completion * chats
    assert summary.streamed == sum(1 for kind, _ in plan if kind == "stream")
    assert summary.cost_usd > 0
    assert summary.p50_ttft_ms is not None and summary.p50_ttft_ms >= 1000 * fake.ttft_s * 0.9
    assert 0 < summary.p50_latency_ms <= summary.p99_latency_ms

    text = out.getvalue()
    assert summary.metrics_url in text and summary.logs_url in text
    assert summary.metrics_url.endswith("/metrics") and summary.logs_url.endswith("/logs")
    assert "errors     1" in text
    lines = progress.getvalue().splitlines()
    assert len(lines) == requests
    assert sum(" 500 " in line for line in lines) == 1


def test_run_demo_without_the_openai_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sdk(base_url: str) -> None:
        raise ImportError("openai")

    monkeypatch.setattr(demo, "_OpenAIClient", no_sdk)
    summary = demo.run_demo(requests=4, out=io.StringIO(), progress=io.StringIO())
    fake = demo.DEMO_FAKE_CONFIG
    assert (summary.requests, summary.errors) == (4, 1)
    assert summary.input_tokens == 3 * fake.prompt_tokens


def test_wait_for_records_gives_up_with_a_warning() -> None:
    async def logs(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"data": [{"status": 200}]}'})

    progress = io.StringIO()
    with BackgroundServer(logs, lifespan="off") as server:
        records = demo._wait_for_records(server.url + "/logs", 2, 0.1, progress)
    assert records == [{"status": 200}]
    assert "only 1 of 2 records" in progress.getvalue()


def test_keep_running_waits_for_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    out = io.StringIO()
    demo._wait_for_interrupt(out)
    assert "Ctrl-C" in out.getvalue() and out.getvalue().endswith("stopping\n")
