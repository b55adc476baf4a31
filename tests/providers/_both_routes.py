"""One upstream answer through both routes of a gateway: the provider's native API (the record) and
the OpenAI API translated to that provider (the record, and what the client receives).

The upstream is an ``httpx.MockTransport`` that replays the answer it is given; the records come from
the gateway's log store. Used by the ``test_record_client_agree_<provider>.py`` files.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway

DELTA_SECONDS = re.compile(r"[0-9]+")
"""``Retry-After`` as delta-seconds (RFC 9110 section 10.2.3): a non-negative integer."""


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


class Answer(NamedTuple):
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

    async def post(self, path: str, body: dict[str, Any]) -> Answer:
        transport = httpx.ASGITransport(app=self.gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            response = await client.post(path, json=body, headers={"authorization": "Bearer client-key"})
        await self.gateway.pipeline.flush()
        store = self.gateway.exporters.log_store
        assert store is not None
        record = json.loads(store.query(limit=1)[0])
        return Answer(response.status_code, response.headers, response.content, record)


async def routes(tmp_path: Path, kind: str, model: str) -> AsyncIterator[Routes]:
    """A started gateway with provider ``kind`` (at ``http://<kind>.test``) and the alias ``chat`` for ``model``.

    Two keys: a 429 cools one down and the next request takes the other (one attempt per request).
    """
    holder: list[Routes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return holder[0].answer(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as upstream:
        config = Config.from_dict(
            {
                "providers": {kind: {"kind": kind, "base_url": f"http://{kind}.test", "api_keys": ["k1", "k2"]}},
                "models": {"chat": {"provider": kind, "model": model}},
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
                "routing": {"retries": 0},
            }
        )
        gateway = create_gateway(config, client=upstream)
        holder.append(Routes(gateway, kind))
        await gateway.startup()
        try:
            yield holder[0]
        finally:
            await gateway.shutdown()
