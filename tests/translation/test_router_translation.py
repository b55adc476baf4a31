"""RouterMiddleware alone (in-process, ``httpx.MockTransport`` upstream): translated answers that are
not what the provider should send, and provider errors turned into OpenAI errors on the way back."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from llm_obs_middleware import Config, RouterMiddleware
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send

from ._golden import SHARED

CHAT: dict[str, Any] = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}


async def not_routed(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("every request here is routed")


def router(answer: Callable[[httpx.Request], httpx.Response]) -> RouterMiddleware:
    config = Config.from_dict(
        {
            "providers": {
                "anthropic": {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["k"]},
                "gemini": {"kind": "gemini", "base_url": "http://gemini.test", "api_keys": ["k"]},
            },
            "models": {"claude": {"provider": "anthropic"}, "flash": {"provider": "gemini"}},
            "routing": {"retries": 0},
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return RouterMiddleware(not_routed, config=config, client=client)


async def post(app: RouterMiddleware, body: Mapping[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        return await client.post("/v1/chat/completions", json=body)


async def test_a_success_body_that_cannot_be_translated_is_a_502() -> None:
    app = router(lambda request: httpx.Response(200, content=b"<html>proxy page</html>"))
    response = await post(app, CHAT)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "untranslatable_response" and "'anthropic'" in error["message"]


async def test_gemini_rate_limit_in_the_body_becomes_retry_after() -> None:
    envelope = json.loads((SHARED / "gemini" / "error_429.json").read_text())
    app = router(lambda request: httpx.Response(429, json=envelope["body"]))  # no Retry-After header
    response = await post(app, {**CHAT, "model": "flash"})
    assert response.status_code == 429 and response.headers["retry-after"] == "37"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "RESOURCE_EXHAUSTED")
    assert error["message"].startswith("You exceeded your current quota")


async def test_request_the_translator_cannot_read_is_a_400_naming_it() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    app = router(answer)
    response = await post(app, {**CHAT, "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]})
    assert response.status_code == 400 and not sent
    assert "function" in response.json()["error"]["message"]


async def test_tool_call_arguments_that_are_not_a_json_object_are_a_400() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "not json"}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]}]
    app = router(lambda request: httpx.Response(500))
    response = await post(app, {**CHAT, "messages": messages})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_arguments", "messages")
