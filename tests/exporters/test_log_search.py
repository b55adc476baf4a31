"""``/logs`` metadata, range and free-text filters: the same answers from SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from llm_obs_middleware.exporters.logstore import SQLLogStore
from llm_obs_middleware.exporters.logstore._search import LogSearch
from llm_obs_middleware.exporters.logstore.api import log_routes
from llm_obs_middleware.records.schema import Cost, LLMRecord, Message, Timing, Usage

from .conftest import START_NS, RecordFactory
from .test_log_stores import empty_store

__all__ = ["empty_store"]  # the fixture (SQLite, then PostgreSQL) this module reuses


def timing(n: int, duration_s: float) -> Timing:
    start = START_NS + n * 1_000_000_000
    return Timing(start_unix_nano=start, end_unix_nano=start + int(duration_s * 1e9), duration_s=duration_s)


@pytest.fixture
async def client(empty_store: SQLLogStore, record_factory: RecordFactory) -> AsyncIterator[httpx.AsyncClient]:
    await empty_store.export(
        [
            record_factory(
                n=1,
                metadata={"x-team": "search", "x-env": "prod"},
                usage=Usage(input_tokens=100, output_tokens=20),
                cost=Cost(total_usd=0.002),
                timing=timing(1, 0.4),
                input_messages=[
                    Message(role="system", content="You are terse."),
                    Message(role="user", content="Where is the Zebra-Crossing?"),
                ],
                output_text="Next to the station.",
            ),
            record_factory(
                n=2,
                metadata={"x-team": "ads", "x-env": "prod"},
                usage=Usage(input_tokens=1000, output_tokens=500),
                cost=Cost(total_usd=0.05),
                timing=timing(2, 2.5),
                input_messages=[Message(role="user", content="write a haiku")],
                output_text="Autumn moon rising; zebra stripes",
            ),
            record_factory(n=3, metadata={"x-team": "search"}, timing=timing(3, 1.0)),  # no usage, cost or content
        ]
    )
    app = Starlette(routes=log_routes(empty_store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def found(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/logs", params=params)
    assert response.status_code == 200, response.text
    data = msgspec.json.decode(response.content, type=dict[str, list[LLMRecord]])["data"]
    return [record.request_id for record in data]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"metadata.x-team": "search"}, ["req-3", "req-1"]),
        ({"metadata.x-team": "search", "metadata.x-env": "prod"}, ["req-1"]),
        ({"metadata.x-team": "nobody"}, []),
        ({"min_cost": "0.01"}, ["req-2"]),
        ({"max_cost": "0.002"}, ["req-1"]),  # inclusive; req-3 has no known cost
        ({"min_latency_s": "1.0"}, ["req-3", "req-2"]),
        ({"min_latency_s": "0.5", "max_latency_s": "2"}, ["req-3"]),
        ({"min_tokens": "120", "max_tokens": "120"}, ["req-1"]),
        ({"max_tokens": "10"}, ["req-3"]),
        ({"q": "zebra"}, ["req-2", "req-1"]),  # case-insensitive, in an input message or the output
        ({"q": "ZEBRA-cross"}, ["req-1"]),  # a substring, punctuation included
        ({"q": "station"}, ["req-1"]),
        ({"q": "haiku", "metadata.x-team": "ads", "min_cost": "0.01"}, ["req-2"]),
        ({"q": "terse", "metadata.x-team": "ads"}, []),
        ({"q": "user"}, []),  # roles and JSON keys are not content
        ({"q": "%"}, []),  # no LIKE wildcards
        ({"q": "_"}, []),
    ],
)
async def test_filters_on_both_stores(client: httpx.AsyncClient, params: dict[str, str], expected: list[str]) -> None:
    assert await found(client, **params) == expected


async def test_search_combines_with_model_and_limit(client: httpx.AsyncClient) -> None:
    # The model filter takes another SQL path (two index walks): the search clauses apply there too.
    assert await found(client, model="gpt-4o-mini", q="zebra", limit="1") == ["req-2"]
    assert await found(client, model="gpt-4o-mini", **{"metadata.x-team": "search"}) == ["req-3", "req-1"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"min_cost": "cheap"}, "min_cost"),
        ({"max_latency_s": "-1"}, "max_latency_s"),
        ({"min_tokens": "1.5"}, "min_tokens"),
        ({"max_tokens": "nan"}, "max_tokens"),
        ({"min_cost": "2", "max_cost": "1"}, "min_cost"),
        ({"metadata.": "x"}, "metadata."),
        ({'metadata.a"b': "x"}, 'metadata.a"b'),
        ({"q": ""}, "q"),
        ({"q": "x" * 1001}, "q"),
    ],
)
async def test_bad_parameters_are_named_in_a_400(
    client: httpx.AsyncClient, params: dict[str, str], parameter: str
) -> None:
    response = await client.get("/logs", params=params)
    assert response.status_code == 400
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{parameter}: "), error


def test_no_search_parameters_means_no_search() -> None:
    assert LogSearch.from_query({"model": "x", "limit": "3"}) is None
