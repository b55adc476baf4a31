"""The gateway on loopback against an upstream that breaks HTTP on purpose (issue 13, findings 5, 6, 19).

Each fault gets a clear JSON error (or an in-band error once a stream started) and a record with the
right outcome; reported usage survives compression and bodies over 8 MB; the total timeout holds
whatever the framing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, MisbehavingServer

PROMPT, COMPLETION = MisbehavingServer.PROMPT_TOKENS, MisbehavingServer.COMPLETION_TOKENS


class Served(NamedTuple):
    url: str
    upstream: MisbehavingServer


@pytest.fixture(scope="module")
def upstream() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as server:
        yield server


@pytest.fixture
def served(upstream: MisbehavingServer, tmp_path: Path) -> Iterator[Served]:
    config = Config.from_dict(
        {
            "providers": {
                "openai": {
                    "kind": "openai",
                    "base_url": upstream.url,
                    "api_keys": ["sk-upstream"],
                    "timeout": {"connect": 5, "read": 60, "total": 0.5},  # read alone would wait a minute
                },
                # For answers that are slow only because they are big (9 MB on a loaded machine).
                "patient": {"kind": "openai", "base_url": upstream.url, "api_keys": ["sk-upstream"]},
            },
            "models": {
                "gpt-4o-mini": {"provider": "openai"},
                "big-answers": {"provider": "patient", "model": "gpt-4o-mini"},
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
            "routing": {"retries": 0},
        }
    )
    with BackgroundServer(create_gateway(config)) as server:
        yield Served(server.url, upstream)


def chat(served: Served, mode: str, *, stream: bool, model: str = "gpt-4o-mini") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(served.url + "/v1/chat/completions", json=body, headers={"x-misbehave": mode}, timeout=30)


def last_record(served: Served) -> dict[str, Any]:
    """The newest record from ``/logs`` (export runs off the request path: wait for it)."""
    deadline = time.monotonic() + 10
    while not (data := httpx.get(served.url + "/logs").json()["data"]):
        assert time.monotonic() < deadline, "no record exported"
        time.sleep(0.01)
    record: dict[str, Any] = data[0]
    return record


@pytest.mark.parametrize("stream", [False, True])
def test_a_status_outside_100_599_is_a_502_naming_it(served: Served, stream: bool) -> None:
    response = chat(served, "bad-status", stream=stream)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_invalid_response"
    assert "status 999" in error["message"]
    record = last_record(served)
    assert (record["status"], record["outcome"], record["error_type"]) == (
        502,
        "upstream_error",
        "upstream_invalid_response",
    )


def test_a_body_shorter_than_its_content_length_is_a_502(served: Served) -> None:
    response = chat(served, "short-body", stream=False)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_disconnected"
    record = last_record(served)
    assert (record["status"], record["outcome"], record["error_type"]) == (
        502,
        "upstream_error",
        "upstream_disconnected",
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_event_that_never_ends_is_cut_at_the_total_timeout(served: Served, stream: bool) -> None:
    # The streamed request asks for usage (hidden from the client), so no chunk passes the usage
    # filter: the deadline must fire without one.
    closed = served.upstream.closed_connections
    response = chat(served, "trickle", stream=stream)
    assert response.status_code == 200  # the stream had started
    assert response.text.endswith('"code":"upstream_timeout"}}\n\n')
    record = last_record(served)
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_timeout")
    assert served.upstream.wait_closed(closed + 1), "the gateway left the upstream connection open"


def test_an_upstream_that_never_answers_is_a_504_at_the_total_timeout(served: Served) -> None:
    response = chat(served, "hang", stream=False)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    record = last_record(served)
    assert (record["status"], record["outcome"], record["error_type"]) == (504, "upstream_error", "upstream_timeout")


def test_a_reset_mid_stream_ends_the_stream_with_an_error(served: Served) -> None:
    response = chat(served, "reset", stream=True)
    assert response.status_code == 200
    assert response.text.endswith('"code":"upstream_disconnected"}}\n\n')
    record = last_record(served)
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_disconnected")


@pytest.mark.parametrize("stream", [False, True])
def test_a_gzip_answer_keeps_its_usage(served: Served, stream: bool) -> None:
    response = chat(served, "gzip", stream=stream, model="big-answers")
    assert response.status_code == 200
    assert "content-encoding" not in response.headers  # the identity answer the gateway asked for
    if stream:
        assert response.text.endswith("data: [DONE]\n\n")
        assert '"choices":[]' not in response.text  # the usage chunk the client did not ask for stays hidden
    else:
        assert response.json()["usage"]["prompt_tokens"] == PROMPT
    record = last_record(served)
    assert record["outcome"] == "completed"
    assert not record["estimated"]
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (PROMPT, COMPLETION)


def test_a_body_over_8_mb_keeps_its_usage(served: Served) -> None:
    response = chat(served, "huge", stream=False, model="big-answers")
    assert response.status_code == 200
    assert len(response.content) > served.upstream.huge_bytes
    assert response.json()["usage"]["completion_tokens"] == COMPLETION
    record = last_record(served)
    assert record["outcome"] == "completed"
    assert not record["estimated"]
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (PROMPT, COMPLETION)


def test_json_nested_a_thousand_deep_is_a_400(served: Served) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 1000 + b"]" * 1000
    response = httpx.post(
        served.url + "/v1/chat/completions", content=body + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "too deeply" in response.json()["error"]["message"]
    record = last_record(served)
    assert (record["status"], record["outcome"]) == (400, "rejected")
