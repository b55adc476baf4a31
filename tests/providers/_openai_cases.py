"""Shared loading of the OpenAI wire-format fixtures and the expected.json comparison.

The fixtures live outside the repo, in ``../shared/fixtures/providers`` (see its README.md for the
expected.json schema). Every key a case gives is either compared with what ``OpenAIAdapter`` produced
or named, with the reason, in :data:`IGNORED_RESPONSE_KEYS`; an unknown key fails the test instead of
being skipped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
from llm_obs_middleware.providers.openai.adapter import CHAT, EMBEDDINGS, RESPONSES, OpenAIAdapter
from llm_obs_middleware.records.build import build_record
from llm_obs_middleware.records.schema import NormalizedRequest, NormalizedResponse
from tests._fixture_paths import PROVIDER_FIXTURES

SHARED_FIXTURES = PROVIDER_FIXTURES

ENDPOINTS: dict[str, Endpoint] = {
    "openai_chat": CHAT,
    "openai_responses": RESPONSES,
    "openai_embeddings": EMBEDDINGS,
}

# expected.json keys our NormalizedResponse cannot represent, and why they are not asserted.
IGNORED_RESPONSE_KEYS: dict[str, str] = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "done_sentinel": "not recorded; a data-only chat stream is `completed` only if [DONE] arrived (asserted)",
    "provider": "gen_ai.provider.name comes from routing config, not from the wire format",
    "note": "free text",
    "accepted_prediction_tokens": "not in the schema",
    "rejected_prediction_tokens": "not in the schema",
    "cache_miss_tokens": "DeepSeek extra; equals uncached_input_tokens, which is asserted",
    "output_items": "not in the schema",
    "embeddings": "vector count is not in the schema",
    "dimensions": "not in the schema",
    "encoding_format": "not in the schema",
}
# Error envelopes: only the body goes through the observer; headers are the router's business.
IGNORED_ERROR_KEYS: dict[str, str] = {
    "status": "an input here: passed to observer(status=...)",
    "retry_after_seconds": "from the retry-after header, not the body the observer sees",
    "retryable": "a routing decision, not part of the normalized response",
    "note": "free text",
}
# expected.json "request" keys our NormalizedRequest cannot represent.
IGNORED_REQUEST_KEYS: dict[str, str] = {
    "max_tokens_field": "which wire field held max_tokens is not recorded (the value is asserted)",
    "reasoning_effort": "not in the schema",
    "store": "not in the schema",
    "inputs": "embeddings input count is not in the schema",
    "dimensions": "not in the schema",
    "encoding_format": "not in the schema",
}


def header_extras(adapter: ProviderAdapter, headers: dict[str, str]) -> dict[str, Any]:
    """The record's ``extra`` built from an error envelope's response headers (as the client got them)."""
    exchange = Exchange({})
    exchange.response_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
    exchange.header_extras = adapter.response_header_extras
    return dict(build_record(exchange, None).extra)


def has_images(request: NormalizedRequest) -> bool:
    """Whether any captured message holds an image reference."""
    return any(message.images for message in request.messages or ())


def require_fixtures() -> Path:
    if not (SHARED_FIXTURES / "openai_chat" / "expected.json").is_file():
        raise RuntimeError(
            f"shared provider fixtures not found at {SHARED_FIXTURES} "
            "(expected the repo next to ../shared/fixtures/providers)"
        )
    return SHARED_FIXTURES


def load_expected(fixture: str) -> dict[str, Any]:
    return json.loads((require_fixtures() / fixture / "expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def read_bytes(fixture: str, name: str) -> bytes:
    return (require_fixtures() / fixture / name).read_bytes()


@dataclass(frozen=True)
class Case:
    fixture: str
    name: str
    expected: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.fixture}/{self.name}"

    @property
    def endpoint(self) -> Endpoint:
        return ENDPOINTS[self.fixture]

    @property
    def is_error(self) -> bool:
        return "error_code" in self.expected or "status" in self.expected

    @property
    def streamed(self) -> bool:
        return bool(self.expected.get("streamed"))

    def body(self) -> bytes:
        return read_bytes(self.fixture, self.name)


def all_cases() -> list[Case]:
    return [
        Case(fixture, name, expected)
        for fixture in ENDPOINTS
        for name, expected in load_expected(fixture)["cases"].items()
    ]


def stream_cases() -> list[Case]:
    return [case for case in all_cases() if case.streamed]


def request_for(fixture: str, *, capture: bool = True) -> NormalizedRequest:
    return OpenAIAdapter().decode_request(
        ENDPOINTS[fixture], read_bytes(fixture, "request.json"), capture_content=capture
    )


def new_exchange(fixture: str, *, capture: bool = True) -> Exchange:
    exchange = Exchange({})
    exchange.request = request_for(fixture, capture=capture)
    return exchange


def observe(case: Case, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    """Feed ``chunks`` (with now_ns = 1, 2, 3...) to a fresh observer and finish it."""
    exchange = exchange if exchange is not None else new_exchange(case.fixture)
    observer = OpenAIAdapter().observer(case.endpoint, exchange, streamed=case.streamed, status=200)
    for i, chunk in enumerate(chunks, start=1):
        observer.feed(chunk, i)
    return observer.finish()


def assert_matches_expected(result: NormalizedResponse, expected: dict[str, Any]) -> None:
    """Compare every success-case key of expected.json that the schema carries; fail on unknown keys."""
    usage = result.usage
    actual: dict[str, Any] = {
        "completed": result.completed,
        "response_id": result.id,
        "response_model": result.model,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "cache_read_tokens": usage.cache_read_tokens if usage else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
        "audio_input_tokens": usage.audio_input_tokens if usage else None,
        "audio_output_tokens": usage.audio_output_tokens if usage else None,
        "finish_reason": result.finish_reason,
        "finish_reason_raw": result.finish_reasons,
        "tool_calls": len(result.tool_calls),
        "tool_call_names": [call.name for call in result.tool_calls],
        "tool_call_ids": [call.id for call in result.tool_calls],
        "tool_call_arguments": [json.loads(call.arguments) for call in result.tool_calls],
        "output_text": result.output_text,
        "events": result.events,
        "service_tier": result.extra.get("openai.service_tier"),
        "system_fingerprint": result.extra.get("openai.system_fingerprint"),
    }
    if usage is not None and usage.input_tokens is not None:
        actual["uncached_input_tokens"] = (
            usage.input_tokens - (usage.cache_read_tokens or 0) - (usage.cache_write_tokens or 0)
        )
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS) - {"uncached_input_tokens"}
    assert not unknown, f"expected.json keys neither asserted nor in IGNORED_RESPONSE_KEYS: {sorted(unknown)}"
    compared = {key: actual.get(key) for key in expected if key not in IGNORED_RESPONSE_KEYS}
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_RESPONSE_KEYS}
    assert compared == wanted
    assert result.error_type is None
    assert result.error_message is None
