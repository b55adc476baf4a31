"""Drives one upstream answer through a gateway twice: the provider's native route and the translated
OpenAI route (``/v1/chat/completions``), and reads what each client got and what each record says.

The upstream is an ``httpx.MockTransport`` (the records come from the gateway's log store), so the
record of the native route, the record of the translated route and the translated client's view all
come from the same bytes. Two ways to script it, one gateway underneath:

- :func:`gateway` with a function of the request (:class:`Answer`), read as :class:`Seen`
  (:func:`native`, :func:`translated`): the Gemini, Ollama, OpenAI and Bedrock agreement tests;
- :func:`routes`, a :class:`Routes` whose :attr:`Routes.upstream` (or :attr:`Routes.cut`) a test sets,
  read as :class:`Reply`: the Anthropic and Cohere ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.providers.translate_base import openai_finish_reason

__all__ = [
    "DELTA_SECONDS",
    "Answer",
    "CutStream",
    "Reply",
    "Routes",
    "Seen",
    "Upstream",
    "assert_agree",
    "assert_valid_retry_after",
    "gateway",
    "native",
    "routes",
    "translated",
]

DELTA_SECONDS = re.compile(r"[0-9]+")
"""``Retry-After`` as delta-seconds (RFC 9110 section 10.2.3): a non-negative integer."""
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
async def _started(
    tmp_path: Path,
    kind: str,
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    model: str,
    alias: str,
    keys: Sequence[str],
) -> AsyncIterator[Gateway]:
    """A started gateway: provider ``kind`` at ``http://<kind>.test`` served by ``handler``, the alias
    ``alias`` for ``model``, no retries, records in a SQLite log store."""
    config = Config.from_dict(
        {
            "providers": {kind: {"kind": kind, "base_url": f"http://{kind}.test", "api_keys": list(keys)}},
            "models": {alias: {"provider": kind, "model": model}},
            "routing": {"retries": 0},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        app = create_gateway(config, client=client)
        await app.startup()
        try:
            yield app
        finally:
            await app.shutdown()


async def _post(
    app: Gateway, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, dict[str, Any]]:
    """The client's response to one request, and the record the gateway wrote of it."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        response = await client.post(path, json=body, headers=headers)
    await app.pipeline.flush()
    store = app.exporters.log_store
    assert store is not None
    [newest, *_] = store.query(limit=1)
    return response, json.loads(newest)


@asynccontextmanager
async def gateway(tmp_path: Path, kind: str, answer: Callable[[httpx.Request], Answer]) -> AsyncIterator[Gateway]:
    """A gateway with one ``kind`` provider (named ``kind``) and the model alias ``alias``."""

    def upstream(request: httpx.Request) -> httpx.Response:
        scripted = answer(request)
        headers = [("content-type", scripted.content_type), *scripted.headers]
        return httpx.Response(scripted.status, content=scripted.body, headers=headers)

    async with _started(tmp_path, kind, upstream, model="m-1", alias="alias", keys=["k"]) as app:
        yield app


async def _call(app: Gateway, path: str, body: dict[str, Any], stream: bool) -> Seen:
    response, record = await _post(app, path, body)
    events: list[Any] = []
    if stream and response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    return Seen(response, events, record)


async def native(app: Gateway, path: str, body: dict[str, Any], *, stream: bool) -> Seen:
    """A request to the provider's own API through the gateway (``/{provider}/...``)."""
    return await _call(app, path, body, stream)


async def translated(app: Gateway, *, stream: bool) -> Seen:
    """An OpenAI chat request for the alias, which the gateway translates to the provider."""
    body: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return await _call(app, "/v1/chat/completions", body, stream)


def assert_valid_retry_after(value: str | None) -> None:
    """``Retry-After`` as delta-seconds (RFC 9110 section 10.2.3): a non-negative integer, nothing else."""
    assert value is not None and DELTA_SECONDS.fullmatch(value), f"not delta-seconds: {value!r}"


def assert_agree(seen_native: Seen, seen_translated: Seen, normalized: str) -> None:
    """Both records say ``normalized``; the translated client reads its OpenAI value."""
    assert seen_native.response.status_code == seen_translated.response.status_code == 200
    assert seen_native.record["finish_reason"] == normalized
    assert seen_translated.record["finish_reason"] == normalized
    assert seen_translated.finish_reasons == [_CLIENT.get(normalized, "stop")]
    assert seen_translated.finish_reasons == [openai_finish_reason(seen_translated.record["finish_reason"])]
    assert seen_translated.record["outcome"] == seen_native.record["outcome"] == "completed"


class Upstream(NamedTuple):
    """What the mocked provider answers every request with."""

    status: int
    body: bytes
    headers: dict[str, str]


class CutStream(httpx.AsyncByteStream):
    """Sends ``parts`` and then fails as a dropped connection does."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class Reply(NamedTuple):
    """What one route gave: the client's status, headers and body, and the exchange's record."""

    status: int
    headers: httpx.Headers
    body: bytes
    record: dict[str, Any]

    def sse_data(self) -> list[dict[str, Any]]:
        """The JSON ``data:`` payloads of an SSE body (``[DONE]`` left out)."""
        return [
            json.loads(line[6:])
            for line in self.body.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"
        ]

    def client_finish(self, streamed: bool) -> str | None:
        """The ``finish_reason`` the OpenAI client got (a stream's last non-null one)."""
        if not streamed:
            return str(json.loads(self.body)["choices"][0]["finish_reason"])
        reasons = [c["choices"][0]["finish_reason"] for c in self.sse_data() if c.get("choices")]
        finished = [reason for reason in reasons if reason is not None]
        assert len(finished) <= 1, finished
        return finished[0] if finished else None


class Routes:
    """A gateway whose ``provider`` (one kind, two keys) answers with :attr:`upstream`."""

    def __init__(self, gateway: Gateway, kind: str) -> None:
        self.gateway = gateway
        self.kind = kind
        self.upstream = Upstream(200, b"", {})
        self.cut: list[bytes] | None = None

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.cut is not None:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=CutStream(self.cut))
        return httpx.Response(self.upstream.status, headers=self.upstream.headers, content=self.upstream.body)

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        response, record = await _post(self.gateway, path, body, {"authorization": "Bearer client-key"})
        return Reply(response.status_code, response.headers, response.content, record)


async def routes(tmp_path: Path, kind: str, model: str) -> AsyncIterator[Routes]:
    """A started gateway with provider ``kind`` (at ``http://<kind>.test``) and the alias ``chat`` for ``model``.

    Two keys: a 429 cools one down and the next request takes the other (one attempt per request).
    """
    holder: list[Routes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return holder[0].answer(request)

    async with _started(tmp_path, kind, answer, model=model, alias="chat", keys=["k1", "k2"]) as app:
        holder.append(Routes(app, kind))
        yield holder[0]
