"""The provider adapter protocol: what the stack needs to know about one wire format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import msgspec

from llm_obs_middleware.upstream.paths import encode_path

if TYPE_CHECKING:
    import httpx

    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.config.settings import ProviderConfig
    from llm_obs_middleware.records.schema import NormalizedRequest

__all__ = [
    "FINISH_REASONS",
    "AdapterDefaults",
    "Endpoint",
    "PreparedBody",
    "ProviderAdapter",
    "decode_top_level",
    "encode_json",
    "normalize_finish_reason",
]

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "error", "other"})
decode_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
"""A JSON object's top-level fields, each value kept as the client's own bytes (``msgspec.Raw``)."""
encode_json = msgspec.json.Encoder().encode


class Endpoint(NamedTuple):
    """A recognised LLM endpoint: the client-facing API and the GenAI operation it performs."""

    api: str
    """e.g. ``openai.chat_completions``, ``openai.responses``, ``openai.embeddings``."""
    operation: str
    """``gen_ai.operation.name``: ``chat``, ``embeddings``..."""
    upstream_path: str = ""
    """Path appended to the provider's ``base_url`` when routed by model (OpenAI-compatible ``/v1/...``);
    native routes (``/{provider}/...``) forward the request's own path instead."""


class PreparedBody(NamedTuple):
    """The body sent upstream and whether the router must hide the usage it asked for."""

    body: bytes
    hide_usage_chunk: bool


class ProviderAdapter(Protocol):
    """One wire format. Adapters are stateless; per-exchange state lives in observers."""

    provider_name: str
    """Default ``gen_ai.provider.name`` for traffic recognised by this adapter."""
    openai_compatible: bool
    """Whether the adapter speaks the OpenAI API (so ``/v1/...`` requests can be routed to it by model)."""
    passthrough_endpoints: Sequence[str]
    """The provider API's other endpoints a native route forwards (recorded, not observed) unless the
    provider's config names its own: ``"METHOD[,METHOD] /path"`` relative to ``base_url``, as encoded
    upstream; ``*`` is any run of characters but ``/``, ``/**`` any rest (see ``_passthrough_rules``)."""

    @property
    def response_header_extras(self) -> Mapping[bytes, str]:
        """Response headers kept in the record's ``extra`` (lowercase name -> key, e.g. ``b"request-id"``
        -> ``anthropic.request_id``); read from the headers the client got, off the request path."""

    def match(self, method: str, path: str) -> Endpoint | None:
        """Recognise an LLM endpoint from the method and the path relative to the route prefix."""

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        """Decode what the record needs from the request body; raises ``SchemaError`` if malformed."""

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        """An incremental observer for the response body."""

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        """The upstream body: the client's bytes, with the model replaced and usage requested when needed."""

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        """Headers carrying the provider key."""

    def path_model(self, endpoint: Endpoint, path: str) -> str | None:
        """The model named in the path (Gemini, Bedrock, Azure deployments), if any."""

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        """The native path sent upstream (percent-encoded), with the model in it replaced when it was
        aliased; ``path`` is decoded, as matched."""

    def passthrough_path(self, path: str) -> str:
        """The upstream path (percent-encoded, relative to ``base_url``) of an endpoint forwarded without
        being observed; ``path`` is the decoded path after ``/{provider}``."""

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        """The in-band error a stream of ``content_type`` ends with when the gateway cuts it (the status
        has left already), shaped as the provider sends its own so the provider's SDK raises it; ``b""``
        when the format has no such frame. The relay places it (after a whole line or message)."""

    def is_stream(self, content_type: bytes) -> bool:
        """Whether a response with this content type is a stream this adapter parses incrementally."""

    def sign(self, request: httpx.Request, provider: ProviderConfig) -> None:
        """Sign the final upstream request in place (e.g. AWS SigV4); most adapters do nothing."""

    def prepare(self, name: str, provider: ProviderConfig) -> None:
        """Check (and cache) what a configured provider needs, once at start-up; raises
        ``ConfigurationError`` naming the provider (e.g. Bedrock without AWS credentials)."""

    def retry_after(self, status: int, body: bytes) -> str | None:
        """A ``Retry-After`` value (delta-seconds) read from an error body, for answers without the
        header (Gemini's ``google.rpc.RetryInfo``); ``None`` when the body says nothing."""


class AdapterDefaults:
    """Defaults for the optional parts of :class:`ProviderAdapter`; adapters override what differs."""

    openai_compatible = False
    response_header_extras: Mapping[bytes, str] = {}
    passthrough_endpoints: Sequence[str] = ()

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        """The client's bytes, or (for an aliased model) its top-level ``model`` replaced; only the top
        level is re-encoded, nested values travel as the client's own bytes."""
        if model == request.model:
            return PreparedBody(body, False)
        fields = decode_top_level(body)
        fields["model"] = msgspec.Raw(encode_json(model))
        return PreparedBody(encode_json(fields), False)

    def path_model(self, endpoint: Endpoint, path: str) -> str | None:
        return None

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        return encode_path(path)

    def passthrough_path(self, path: str) -> str:
        return encode_path(path)

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        return b""

    def is_stream(self, content_type: bytes) -> bool:
        return content_type.startswith(b"text/event-stream")

    def sign(self, request: httpx.Request, provider: ProviderConfig) -> None:
        return None

    def prepare(self, name: str, provider: ProviderConfig) -> None:
        return None

    def retry_after(self, status: int, body: bytes) -> str | None:
        return None


def normalize_finish_reason(raw: str | None, has_tool_calls: bool) -> str | None:
    """Map a provider finish reason onto one vocabulary (see fixtures README)."""
    if raw is None:
        return None
    reason = _FINISH_MAP.get(raw.lower(), "other")
    if reason == "stop" and has_tool_calls:
        return "tool_calls"
    return reason


_FINISH_MAP = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "error": "error",
    "failed": "error",
}
