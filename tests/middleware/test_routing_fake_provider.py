"""Routing against the fake provider over loopback: its real failure modes, through the real transport.

Each provider is a separate fake server (or a port that refuses or never accepts), so the router
meets connect errors, timeouts, 5xx, 529 and dropped streams as it would in production.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer

from ..conftest import Recorded, drive

CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'
REFUSED = "http://127.0.0.1:9/v1"  # discard port: nothing listens on loopback


@pytest.fixture
def backup() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def never_accepts() -> Iterator[str]:
    """A loopback port whose accept queue is full: a new connection hangs in the handshake."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    for filler in fillers:
        filler.close()
    listener.close()


def config(tmp_path: Path, primary_url: str, backup_url: str, **primary: Any) -> Config:
    return Config.from_dict(
        {
            "providers": {
                "primary": {"kind": "openai", "base_url": primary_url, "api_keys": ["k-a", "k-b"], **primary},
                "backup": {"kind": "openai_compatible", "base_url": backup_url, "api_keys": ["k-backup"]},
            },
            "models": {
                "gpt-4o": {"provider": "primary", "fallbacks": ["backup-model"]},
                "backup-model": {"provider": "backup", "model": "gpt-4o-mini"},
            },
            "routing": {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )


async def run(config: Config, body: bytes = CHAT, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """One request through a fresh gateway: (response, record)."""
    gateway: Gateway = create_gateway(config)
    await gateway.startup()
    try:
        result: Recorded = await drive(gateway, "/v1/chat/completions", body, headers=headers)
        await gateway.pipeline.flush()
        store = gateway.exporters.log_store
        assert store is not None
        [raw] = store.query(limit=10)
    finally:
        await gateway.shutdown()
    return result, json.loads(raw)


def trail(record: dict[str, Any]) -> list[tuple[str, Any, int]]:
    return [
        (a["provider"], a.get("status") or a.get("error_type"), a.get("fallback_index", 0)) for a in record["attempts"]
    ]


async def test_5xx_exhausts_retries_then_the_fallback_serves(tmp_path: Path, backup: FakeProviderServer) -> None:
    with FakeProviderServer(FakeProviderConfig(fail_status=503)) as primary:
        result, record = await run(config(tmp_path, primary.url, backup.url))
        primary_calls = len(primary.app.requests)
    assert result.status == 200 and json.loads(result.body)["model"] == "gpt-4o-mini"
    assert primary_calls == 3 and len(backup.app.requests) == 1
    assert trail(record) == [("primary", 503, 0)] * 3 + [("backup", 200, 1)]
    assert [a["key_id"] for a in record["attempts"][:2]] in (["primary#0", "primary#1"], ["primary#1", "primary#0"])
    assert (record["retries"], record["fallback_index"], record["route"]) == (3, 1, "backup")


async def test_connect_refused_falls_through_to_the_fallback(tmp_path: Path, backup: FakeProviderServer) -> None:
    result, record = await run(config(tmp_path, REFUSED, backup.url))
    assert result.status == 200
    assert trail(record) == [("primary", "upstream_unreachable", 0)] * 3 + [("backup", 200, 1)]


async def test_connect_timeout_is_per_provider(tmp_path: Path, backup: FakeProviderServer, never_accepts: str) -> None:
    cfg = config(tmp_path, never_accepts, backup.url, timeout={"connect": 0.15})
    result, record = await run(cfg)
    assert result.status == 200
    assert trail(record) == [("primary", "upstream_timeout", 0)] * 3 + [("backup", 200, 1)]
    # Each attempt gave up long before the 5 s default connect timeout would have.
    assert all(a["latency_s"] < 5.0 for a in record["attempts"][:3]), "the 5 s default was used"


async def test_first_byte_timeout_falls_through(tmp_path: Path, backup: FakeProviderServer) -> None:
    with FakeProviderServer(FakeProviderConfig(latency_s=2.0)) as slow:
        cfg = config(tmp_path, slow.url, backup.url, timeout={"read": 0.2})
        result, record = await run(cfg)
    assert result.status == 200
    assert trail(record) == [("primary", "upstream_timeout", 0)] * 3 + [("backup", 200, 1)]
    # A timed-out attempt ends before the slow upstream's headers (2 s) could have arrived.
    assert all(a["latency_s"] < 2.0 for a in record["attempts"][:3]), "an attempt waited for the headers"


async def test_a_dropped_stream_is_not_retried_and_the_record_says_why(
    tmp_path: Path, backup: FakeProviderServer
) -> None:
    with FakeProviderServer(FakeProviderConfig(chunks=6)) as primary:
        result, record = await run(
            config(tmp_path, primary.url, backup.url), STREAM, headers=[(b"x-fake-drop-after", b"2")]
        )
        primary_calls = len(primary.app.requests)
    assert result.status == 200
    assert b'"content"' in result.body, "bytes reached the client before the drop"
    assert b'"upstream_disconnected"' in result.body and b"[DONE]" not in result.body
    assert primary_calls == 1 and len(backup.app.requests) == 0, "no retry, no fallback"
    assert (record["outcome"], record["error_type"], record["status"]) == (
        "upstream_error",
        "upstream_disconnected",
        200,
    )
    assert trail(record) == [("primary", 200, 0)] and record["retries"] == 0


async def test_a_stream_longer_than_the_total_timeout_is_cut(tmp_path: Path, backup: FakeProviderServer) -> None:
    with FakeProviderServer(FakeProviderConfig(chunks=20, chunk_interval_s=0.05)) as trickle:
        # Each gap (50 ms) is well within the read timeout; the whole stream (1 s) is not within total.
        cfg = config(tmp_path, trickle.url, backup.url, timeout={"read": 5, "total": 0.3})
        result, record = await run(cfg, STREAM)
    assert result.status == 200
    assert b"[DONE]" not in result.body, "the stream was cut before its end"
    last_chunk = result.bodies[-1][1]
    assert b'"upstream_timeout"' in last_chunk and b"total timeout" in last_chunk
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_timeout")
    assert len(backup.app.requests) == 0, "bytes had reached the client: no fallback"


async def test_every_deployment_failing_gives_the_last_upstream_answer(tmp_path: Path) -> None:
    with (
        FakeProviderServer(FakeProviderConfig(fail_status=500)) as primary,
        FakeProviderServer(FakeProviderConfig(fail_status=529)) as overloaded,
    ):
        result, record = await run(config(tmp_path, primary.url, overloaded.url))
    assert result.status == 529
    assert "529" in json.loads(result.body)["error"]["message"]
    assert trail(record) == [("primary", 500, 0)] * 3 + [("backup", 529, 1)] * 3
    assert (record["status"], record["outcome"]) == (529, "upstream_error")


async def test_nobody_answering_is_a_502_naming_every_attempt(tmp_path: Path) -> None:
    result, record = await run(config(tmp_path, REFUSED, REFUSED))
    assert result.status == 502
    error = json.loads(result.body)["error"]
    assert error["code"] == "upstream_unreachable"
    assert "gpt-4o/primary/gpt-4o (upstream_unreachable)" in error["message"]
    assert "backup-model/backup/gpt-4o-mini (upstream_unreachable)" in error["message"]
    assert len(record["attempts"]) == 6 and record["error_type"] == "upstream_unreachable"
