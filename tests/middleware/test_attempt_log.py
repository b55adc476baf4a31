"""A warning line per failed upstream attempt, with its fields, never the key (issue 13, finding 15)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderServer

from ..conftest import UPSTREAM_KEY, GatewayKit, config_dict, drive

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _failed(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [vars(r)["llm_obs"] for r in caplog.records if r.name == "llm_obs_middleware.routing"]


async def test_each_failed_attempt_is_one_warning(
    make_kit: Callable[..., Awaitable[GatewayKit]], caplog: pytest.LogCaptureFixture
) -> None:
    kit = await make_kit(routing={"retries": 1, "backoff_base_s": 0})
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.routing"):
        async with kit.client() as client:
            reply = await client.post("/v1/chat/completions", json=CHAT, headers={"x-fake-status": "503"})
    assert reply.status_code == 503
    failed = _failed(caplog)
    assert [(f["deployment"], f["key"], f["status"], f["error"]) for f in failed] == [
        ("gpt-4o-mini/openai/gpt-4o-mini", "openai#0", 503, "http_503")
    ] * 2
    assert all(isinstance(f["latency_ms"], float) for f in failed)
    assert all(UPSTREAM_KEY not in r.getMessage() for r in caplog.records)


async def test_an_answer_cut_mid_stream_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeProviderServer() as fake:
        gateway = create_gateway(Config.from_dict(config_dict(fake.url, tmp_path=tmp_path)))
        await gateway.startup()
        try:
            with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.routing"):
                body = msgspec.json.encode({**CHAT, "stream": True})
                result = await drive(gateway, "/v1/chat/completions", body, headers=[(b"x-fake-drop-after", b"2")])
        finally:
            await gateway.shutdown()
    assert result.status == 200
    [failed] = _failed(caplog)
    assert (failed["status"], failed["error"]) == (200, "upstream_disconnected")


async def test_no_line_when_the_upstream_answers(
    make_kit: Callable[..., Awaitable[GatewayKit]], caplog: pytest.LogCaptureFixture
) -> None:
    kit = await make_kit()
    with caplog.at_level(logging.DEBUG, logger="llm_obs_middleware"):
        async with kit.client() as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert _failed(caplog) == []
