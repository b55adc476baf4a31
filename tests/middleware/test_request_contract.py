"""One request contract: an LLM request is recognised (``match_request``) once, whichever layers run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import (
    AccountingMiddleware,
    Config,
    ExportMiddleware,
    ExportPipeline,
    LLMObservability,
    RouterMiddleware,
    TraceContextMiddleware,
)
from llm_obs_middleware.providers import registry
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict, drive
from .test_standalone_middlewares import CHAT, ListSink, app_with_own_endpoints


@pytest.fixture
def match_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every ``match_request`` call's path, in order."""
    calls: list[str] = []
    original = registry.match_request

    def counting(method: str, path: str, provider_kinds: Any) -> Any:
        calls.append(path)
        return original(method, path, provider_kinds)

    monkeypatch.setattr(registry, "match_request", counting)
    yield calls


Build = Callable[[Any, Config, httpx.AsyncClient, Path], Any]

LAYERS: dict[str, Build] = {
    "full stack": lambda app, config, client, tmp: LLMObservability(app, config=config, client=client),
    "router alone": lambda app, config, client, tmp: RouterMiddleware(app, config=config, client=client),
    "accounting alone": lambda app, config, client, tmp: AccountingMiddleware(app, config=config),
    "trace context alone": lambda app, config, client, tmp: TraceContextMiddleware(app, config=config),
    "export + accounting + router": lambda app, config, client, tmp: ExportMiddleware(
        AccountingMiddleware(RouterMiddleware(app, config=config, client=client), config=config),
        pipeline=ExportPipeline([]),
    ),
}


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_an_llm_request_is_recognised_once(
    layers: str, streamed: bool, match_calls: list[str], tmp_path: Path
) -> None:
    fake = create_fake_provider()
    config = Config.from_dict(config_dict())
    body = CHAT[:-1] + b',"stream":true}' if streamed else CHAT
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        app = LAYERS[layers](app_with_own_endpoints(), config, upstream, tmp_path)
        result = await drive(app, "/v1/chat/completions", body)
        if isinstance(app, LLMObservability):
            await app.aclose()
    assert result.status == 200
    assert match_calls == ["/v1/chat/completions"]


async def test_a_translated_request_is_recognised_once_and_accounted_natively(
    match_calls: list[str], tmp_path: Path
) -> None:
    sink = ListSink()
    fake = create_fake_provider()
    data = config_dict(
        providers={"claude": {"kind": "anthropic", "base_url": "http://fake.test", "api_keys": ["sk-ant"]}},
        models={"sonnet": {"provider": "claude", "model": "claude-sonnet-4-5"}},
    )
    config = Config.from_dict(data)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        stack = LLMObservability(app_with_own_endpoints(), config=config, client=upstream)
        stack.exporters.pipeline.sinks.append(sink)
        result = await drive(stack, "/v1/chat/completions", CHAT.replace(b"gpt-4o-mini", b"sonnet"))
        await stack.aclose()
    assert result.status == 200
    assert json.loads(result.body)["object"] == "chat.completion", "the client got the OpenAI translation"
    assert match_calls == ["/v1/chat/completions"]
    [record] = sink.records
    # The native (Anthropic) answer was observed, not the translation: the record names Anthropic's API.
    assert record.provider == "anthropic" and record.usage is not None and record.usage.output_tokens


@pytest.mark.parametrize(
    ("path", "echoed"),
    [("/v1/chat/completions", True), ("/llm/v1/chat/completions", True), ("/anything", False), ("/llm/nope", False)],
)
async def test_trace_context_alone_echoes_ids_on_llm_paths_only(path: str, echoed: bool) -> None:
    """The echo is trace context's own decision (path and config), whatever runs inside it."""

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    config = Config.from_dict(config_dict(route_prefix="/llm"))
    result = await drive(TraceContextMiddleware(plain, config=config), path, CHAT, headers=[(b"x-request-id", b"r-1")])
    assert result.status == 200
    assert (result.headers.get(b"x-request-id") == b"r-1") is echoed
    assert (b"traceparent" in result.headers) is echoed
