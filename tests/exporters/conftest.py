"""Record factories shared by the exporter tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_obs_middleware.records.schema import LLMRecord, Timing

RecordFactory = Callable[..., LLMRecord]

START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def make_record(**overrides: Any) -> LLMRecord:
    """A completed chat record; every field can be overridden."""
    n = overrides.pop("n", 1)
    start = overrides.pop("start_unix_nano", START_NS + n * 1_000_000_000)
    duration_s = overrides.pop("duration_s", 0.5)
    timing = overrides.pop(
        "timing",
        Timing(start_unix_nano=start, end_unix_nano=start + int(duration_s * 1e9), duration_s=duration_s),
    )
    fields: dict[str, Any] = {
        "request_id": f"req-{n}",
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "operation": "chat",
        "api": "openai.chat_completions",
        "provider": "openai",
        "status": 200,
        "outcome": "completed",
        "requested_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "timing": timing,
    }
    fields.update(overrides)
    return LLMRecord(**fields)


@pytest.fixture
def record_factory() -> RecordFactory:
    return make_record


POSTGRES_ADMIN_URL = os.environ.get("LLM_OBS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _server_missing(what: str, why: str) -> None:
    """Project rule: a test needing a server fails under CI (``CI=true``) and may skip elsewhere."""
    message = f"{what} is not available: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def require_psycopg() -> Any:
    """The psycopg module; missing, it fails the test under CI and skips it elsewhere."""
    try:
        import psycopg
    except ImportError as exc:  # the postgres extra is not installed
        _server_missing("psycopg (the postgres extra)", str(exc))
    return psycopg


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL database, created for this test run and dropped after it."""
    psycopg = require_psycopg()
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _server_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", str(exc).strip())
    name = f"llm_obs_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The throwaway database, emptied of our tables so each test starts from schema version 0."""
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS llm_records, llm_obs_schema_version")
    return postgres_database
