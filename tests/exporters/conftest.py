"""Record factories shared by the exporter tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llm_obs_middleware.schema import LLMRecord, Timing

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
