"""Client-chosen strings are bounded before they reach a label, a span or a record (issue 13, finding 1)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware.records.bounds import MAX_NAME_CHARS, TRUNCATION_MARK, bounded

from .conftest import GatewayKit

LABEL_CAP = 200  # distinct model and deployment label values per provider
HUGE = 1024 * 1024  # a 1 MB model name; the attack used 5 MB


def test_bounded_cuts_and_marks() -> None:
    assert bounded("gpt-4o") == "gpt-4o"
    assert bounded(None) is None
    cut = bounded("x" * 1000)
    assert len(cut) == MAX_NAME_CHARS and cut.endswith(TRUNCATION_MARK)
    assert bounded("abcdefghijklmnopqrstuvwxyz", len(TRUNCATION_MARK) + 3) == "abc" + TRUNCATION_MARK


def _label_values(text: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if label in sample.labels
    }


async def _chat(
    client: httpx.AsyncClient, model: str, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **(body or {})}
    return await client.post("/v1/chat/completions", json=body, headers=headers)


async def _logs(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    for _ in range(400):
        records: list[dict[str, Any]] = (await client.get("/logs", params={"limit": count})).json()["data"]
        if len(records) >= count:
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} records")


@pytest.mark.parametrize(
    "size",
    [HUGE, 8000],
    ids=["1 MB: refused as no URL could hold it", "8,000 chars: served, its deployment named after it"],
)
async def test_huge_model_names_are_cut_everywhere(make_kit: Callable[..., Awaitable[GatewayKit]], size: int) -> None:
    kit = await make_kit(
        default_provider="openai", trace_context={"metadata_headers": ["x-tenant-id"]}, capture_content=False
    )
    async with kit.client() as client:
        for index in range(4):
            model = f"m{index}-" + "y" * size
            stop = {"stop": ["z" * 5000] * 100}  # the fake provider ignores it; the record keeps a bounded copy
            await _chat(client, model, stop, **{"x-session-id": "s" * 100, "x-tenant-id": "t" * 8000})
        records = await _logs(client, 4)
        await kit.gateway.exporters.pipeline.flush()
        metrics = (await client.get("/metrics")).text
    assert len(metrics) < 200_000  # 1.66 GB for 4 x 5 MB names before
    for label in ("model", "deployment"):
        values = _label_values(metrics, label)
        assert values and all(len(value) <= MAX_NAME_CHARS for value in values), label
    for record in records:
        assert len(record["requested_model"]) == MAX_NAME_CHARS
        assert record["requested_model"].endswith(TRUNCATION_MARK)
        if size == HUGE:
            assert (record["status"], record["error_type"]) == (414, "invalid_url")
        else:
            assert record["status"] == 200 and len(record["deployment"]) <= MAX_NAME_CHARS
        assert all(len(attempt["model"]) <= MAX_NAME_CHARS for attempt in record["attempts"])
        assert len(record["metadata"]["x-tenant-id"]) <= MAX_NAME_CHARS
        stops = record["params"]["stop"]
        assert 0 < len(stops) <= 16 and all(len(stop) <= MAX_NAME_CHARS for stop in stops)
    spans = kit.spans.get_finished_spans()
    assert spans
    for span in spans:
        for value in (span.attributes or {}).values():
            assert not isinstance(value, str) or len(value) <= 2048, span.name


async def test_many_model_names_keep_label_counts_bounded(
    make_kit: Callable[..., Awaitable[GatewayKit]],
) -> None:
    kit = await make_kit(default_provider="openai")
    async with kit.client() as client:
        for _ in range(LABEL_CAP + 60):
            await _chat(client, "random-" + secrets.token_hex(6))
        await kit.gateway.exporters.pipeline.flush()
        metrics = (await client.get("/metrics")).text
    models = _label_values(metrics, "model")
    deployments = _label_values(metrics, "deployment")
    assert "other" in models and "other" in deployments
    # 200 client-named values + "other" (+ the two configured aliases' deployments).
    assert len(models) <= LABEL_CAP + 1
    assert len(deployments) <= LABEL_CAP + 1
