"""Drives one upstream answer through a gateway twice: the provider's native route and the translated
OpenAI route (``/v1/chat/completions``), and reads what each client got and what each record says.

The upstream is an ``httpx.MockTransport`` answering every request with the same scripted answer, so
the record of the native route, the record of the translated route and the translated client's view
all come from the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.providers.translate_base import openai_finish_reason

__all__ = ["Answer", "Seen", "assert_agree", "assert_valid_retry_after", "gateway", "native", "translated"]

_DELTA_SECONDS = re.compile(r"[0-9]+")
_CLIENT = {"stop": "stop", "length": "length", "content_filter": "content_filter", "tool_calls": "tool_calls"}
"""What an OpenAI client reads for each normalized finish reason (``error`` and ``other`` read ``stop``)."""


class Answer(NamedTuple):
    """What the upstream sends: status, body, content type, other headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class Seen(NamedTuple):
    """One call: the client's response, the SSE events it parsed (streams) and the record."""

    response: httpx.Response
    events: list[Any]
    record: dict[str, Any]

    @property
    def finish_reasons(self) -> list[str]:
        """The OpenAI ``finish_reason`` values the client received (plain or streamed)."""
        if not self.events:
            return [choice["finish_reason"] for choice in self.response.json().get("choices", ())]
        return [
            choice["finish_reason"]
            for event in self.events
            if isinstance(event, dict)
            for choice in event.get("choices", ())
            if choice.get("finish_reason") is not None
        ]

    @property
    def error_frames(self) -> list[dict[str, Any]]:
        return [event["error"] for event in self.events if isinstance(event, dict) and "error" in event]

    @property
    def done(self) -> bool:
        return "[DONE]" in self.events


@asynccontextmanager
async def gateway(tmp_path: Path, kind: str, answer: Callable[[httpx.Request], Answer]) -> AsyncIterator[Gateway]:
    """A gateway with one ``kind`` provider (named ``kind``) and the model alias ``alias``."""

    def upstream(request: httpx.Request) -> httpx.Response:
        scripted = answer(request)
        headers = [("content-type", scripted.content_type), *scripted.headers]
        return httpx.Response(scripted.status, content=scripted.body, headers=headers)

    config = Config.from_dict(
        {
            "providers": {kind: {"kind": kind, "base_url": f"http://{kind}.test", "api_keys": ["k"]}},
            "models": {"alias": {"provider": kind, "model": "m-1"}},
            "routing": {"retries": 0},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    app = create_gateway(config, client=client)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()
        await client.aclose()


async def _call(app: Gateway, path: str, body: dict[str, Any], stream: bool) -> Seen:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        response = await client.post(path, json=body)
    events: list[Any] = []
    if stream and response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    await app.pipeline.flush()
    store = app.exporters.log_store
    assert store is not None
    [newest, *_] = store.query(limit=1)
    return Seen(response, events, json.loads(newest))


async def native(app: Gateway, path: str, body: dict[str, Any], *, stream: bool) -> Seen:
    """A request to the provider's own API through the gateway (``/{provider}/...``)."""
    return await _call(app, path, body, stream)


async def translated(app: Gateway, *, stream: bool) -> Seen:
    """An OpenAI chat request for the alias, which the gateway translates to the provider."""
    body: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return await _call(app, "/v1/chat/completions", body, stream)


def assert_valid_retry_after(value: str | None) -> None:
    """``Retry-After`` as delta-seconds (RFC 9110 section 10.2.3): a non-negative integer, nothing else."""
    assert value is not None and _DELTA_SECONDS.fullmatch(value), f"not delta-seconds: {value!r}"


def assert_agree(seen_native: Seen, seen_translated: Seen, normalized: str) -> None:
    """Both records say ``normalized``; the translated client reads its OpenAI value."""
    assert seen_native.response.status_code == seen_translated.response.status_code == 200
    assert seen_native.record["finish_reason"] == normalized
    assert seen_translated.record["finish_reason"] == normalized
    assert seen_translated.finish_reasons == [_CLIENT.get(normalized, "stop")]
    assert seen_translated.finish_reasons == [openai_finish_reason(seen_translated.record["finish_reason"])]
    assert seen_translated.record["outcome"] == seen_native.record["outcome"] == "completed"
