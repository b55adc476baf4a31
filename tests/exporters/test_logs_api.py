"""The /logs API on a tiny Starlette app, through httpx.ASGITransport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from llm_obs_middleware.exporters.logstore import SQLiteLogStore
from llm_obs_middleware.exporters.logstore.api import log_routes
from llm_obs_middleware.records.schema import LLMRecord

from .conftest import RecordFactory


@pytest.fixture
async def store(record_factory: RecordFactory) -> AsyncIterator[SQLiteLogStore]:
    store = SQLiteLogStore("sqlite:///:memory:")
    await store.export(
        [
            record_factory(n=1, session_id="s1"),
            record_factory(n=2, status=500, provider="anthropic", response_model="claude-3-5"),
            record_factory(n=3, session_id="s1"),
        ]
    )
    yield store
    await store.close()


@pytest.fixture
async def client(store: SQLiteLogStore) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=log_routes(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


def request_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    data = msgspec.json.decode(response.content, type=dict[str, list[LLMRecord]])["data"]
    return [record.request_id for record in data]


async def test_list_newest_first(client: httpx.AsyncClient, record_factory: RecordFactory) -> None:
    response = await client.get("/logs")
    assert request_ids(response) == ["req-3", "req-2", "req-1"]
    # Each element is the record exactly as msgspec encodes it.
    assert response.content.endswith(msgspec.json.encode(record_factory(n=1, session_id="s1")) + b"]}")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": "claude-3-5"}, ["req-2"]),
        ({"provider": "openai"}, ["req-3", "req-1"]),
        ({"status": "5xx"}, ["req-2"]),
        ({"status": "200"}, ["req-3", "req-1"]),
        ({"session_id": "s1", "limit": "1"}, ["req-3"]),
        ({"since": "1700000002", "until": "2023-11-14T22:13:23Z"}, ["req-2"]),
        ({"model": "nothing"}, []),
    ],
)
async def test_filters(client: httpx.AsyncClient, query: dict[str, str], expected: list[str]) -> None:
    assert request_ids(await client.get("/logs", params=query)) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "abc"}, "status"),
        ({"since": "last week"}, "since"),
        ({"until": "2023-13-45"}, "until"),
    ],
)
async def test_invalid_parameters(client: httpx.AsyncClient, query: dict[str, str], parameter: str) -> None:
    response = await client.get("/logs", params=query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{parameter}:")


async def test_get_one(client: httpx.AsyncClient, record_factory: RecordFactory) -> None:
    response = await client.get("/logs/req-1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == msgspec.json.encode(record_factory(n=1, session_id="s1"))


async def test_get_missing(client: httpx.AsyncClient) -> None:
    response = await client.get("/logs/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "no record with request id 'nope'", "type": "not_found_error"}}


async def test_team_filter(store: SQLiteLogStore, client: httpx.AsyncClient, record_factory: RecordFactory) -> None:
    await store.export([record_factory(n=4, team="red")])
    assert request_ids(await client.get("/logs", params={"team": "red"})) == ["req-4"]


async def test_session_in_order(client: httpx.AsyncClient, record_factory: RecordFactory) -> None:
    response = await client.get("/sessions/s1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = msgspec.json.decode(response.content)
    assert body["session_id"] == "s1"
    assert [r["request_id"] for r in body["data"]] == ["req-1", "req-3"]  # oldest first
    assert response.content.endswith(msgspec.json.encode(record_factory(n=3, session_id="s1")) + b"]}")
    limited = (await client.get("/sessions/s1", params={"limit": "1"})).json()
    assert [r["request_id"] for r in limited["data"]] == ["req-1"]


async def test_session_missing_and_bad_limit(client: httpx.AsyncClient) -> None:
    response = await client.get("/sessions/nope")
    assert response.status_code == 404
    assert response.json()["error"] == {"message": "no record with session id 'nope'", "type": "not_found_error"}
    response = await client.get("/sessions/s1", params={"limit": "0"})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("limit:")


async def test_stats(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/logs/stats", params={"since": "1700000000", "until": "1700000100", "group_by": "provider"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    stats = response.json()
    assert stats["since"] == "2023-11-14T22:13:20Z"
    assert stats["until"] == "2023-11-14T22:15:00Z"
    assert stats["group_by"] == "provider"
    assert stats["totals"]["requests"] == 3
    assert stats["totals"]["errors"] == 1
    assert stats["totals"]["error_rate"] == pytest.approx(1 / 3)
    assert stats["totals"]["latency_p50_s"] == 0.5
    assert [(g["key"], g["requests"], g["errors"]) for g in stats["groups"]] == [("openai", 2, 0), ("anthropic", 1, 1)]
    # Filters narrow the window's records; without group_by there are totals only.
    narrowed = (await client.get("/logs/stats", params={"since": "1700000000", "provider": "anthropic"})).json()
    assert narrowed["totals"]["requests"] == 1 and narrowed["groups"] == []


async def test_stats_default_window_is_the_last_day(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/logs/stats")).json()
    assert stats["totals"]["requests"] == 0  # the fixture's records are from 2023
    since = datetime.fromisoformat(stats["since"])
    until = datetime.fromisoformat(stats["until"])
    assert until - since == timedelta(days=1)
    assert abs(until.timestamp() - time.time()) < 60


@pytest.mark.parametrize(
    ("query", "parameter"),
    [({"group_by": "user"}, "group_by"), ({"since": "soon"}, "since"), ({"until": "-5"}, "until")],
)
async def test_stats_invalid_parameters(client: httpx.AsyncClient, query: dict[str, str], parameter: str) -> None:
    response = await client.get("/logs/stats", params=query)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{parameter}:")


async def test_client_request_id_filter(client: httpx.AsyncClient, store: SQLiteLogStore) -> None:
    from .conftest import make_record

    await store.export([make_record(n=7, client_request_id="abc"), make_record(n=8, client_request_id="abcd")])
    assert request_ids(await client.get("/logs", params={"client_request_id": "abc"})) == ["req-7"]
    assert request_ids(await client.get("/logs", params={"client_request_id": "nope"})) == []


async def test_a_store_that_cannot_answer_gets_a_json_error_not_a_crash(tmp_path: Path) -> None:
    store = SQLiteLogStore(tmp_path)  # a directory: SQLite cannot open it as a database
    app = Starlette(routes=log_routes(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        replies = [await client.get(path) for path in ("/logs", "/logs/stats", "/logs/x", "/sessions/s")]
    await store.close()
    assert [reply.status_code for reply in replies] == [503] * 4
    assert {reply.json()["error"]["type"] for reply in replies} == {"log_store_unavailable"}
