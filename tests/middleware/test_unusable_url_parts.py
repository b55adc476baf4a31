"""A path or model name that cannot go into an upstream URL is refused with a JSON error, not a 500
(issue 13, finding 5): CR, LF, NUL or 70 KB used to raise ``httpx.InvalidURL`` while building the URL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from ..conftest import UPSTREAM_KEY, GatewayKit, drive
from .test_routing_errors import records

GEMINI = {"kind": "gemini", "base_url": "http://gemini.test", "api_keys": [UPSTREAM_KEY]}
LONG = "a" * 70_000


async def _kit(make_kit: Callable[..., Awaitable[GatewayKit]]) -> GatewayKit:
    return await make_kit(
        providers={
            "openai": {"kind": "openai", "base_url": "http://fake.test/v1", "api_keys": [UPSTREAM_KEY]},
            "gemini": GEMINI,
        },
        models={"gpt-4o-mini": {"provider": "openai"}, "gem": {"provider": "gemini", "model": "gemini-2.0-flash"}},
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/gemini/v1beta/models/gemini\r\n-2.0-flash:generateContent", 400),
        ("/gemini/v1beta/models/gemini\x00-2.0-flash:generateContent", 400),
        (f"/gemini/v1beta/models/{LONG}:generateContent", 414),
        ("/openai/v1/files/file\r\nx", 400),
        ("/openai/v1/files/file\x00x", 400),
        (f"/openai/v1/files/{LONG}", 414),
    ],
    ids=["gemini-crlf", "gemini-nul", "gemini-70kb", "native-crlf", "native-nul", "native-70kb"],
)
async def test_unusable_paths_are_refused_with_a_json_error(
    make_kit: Callable[..., Awaitable[GatewayKit]], path: str, status: int
) -> None:
    kit = await _kit(make_kit)
    body = b'{"contents":[{"parts":[{"text":"hi"}]}]}' if "gemini" in path else b""
    recorded = await drive(kit.gateway, path, body, method="POST" if body else "GET")
    assert recorded.status == status
    error = json.loads(recorded.body)["error"]
    assert error["code"] == "invalid_url"
    assert not kit.fake.requests  # nothing went upstream
    if "gemini" in path:  # an LLM route: recorded as refused (native passthrough records are another change's)
        [record] = await records(kit.gateway)
        assert (record["status"], record["outcome"], record["error_type"]) == (status, "rejected", "invalid_url")


async def test_a_model_name_that_cannot_be_in_a_url_is_refused(make_kit: Callable[..., Awaitable[GatewayKit]]) -> None:
    kit = await _kit(make_kit)
    body = json.dumps({"model": "gemini/gemini\r\nx", "messages": [{"role": "user", "content": "hi"}]}).encode()
    recorded = await drive(kit.gateway, "/v1/chat/completions", body)
    assert recorded.status == 400
    assert json.loads(recorded.body)["error"]["code"] == "invalid_url"
    [record] = await records(kit.gateway)
    assert (record["status"], record["outcome"], record["error_type"]) == (400, "rejected", "invalid_url")
