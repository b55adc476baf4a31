"""The normalized record schema: one vocabulary for every provider, middleware and sink.

Every provider adapter produces these Structs and every sink consumes them. ``msgspec.json.encode``
of an :class:`LLMRecord` is the log store's and the ``/logs`` API's format, so field names here are
public API: add fields with defaults, never rename.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

__all__ = [
    "Attempt",
    "Cost",
    "ExtraValue",
    "ImageRef",
    "LLMRecord",
    "Message",
    "NormalizedRequest",
    "NormalizedResponse",
    "RequestParams",
    "Timing",
    "ToolCall",
    "Usage",
]


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Token counts. ``None`` means not reported; ``0`` means reported as zero.

    ``input_tokens`` counts ALL input tokens (cache reads and writes included) and ``output_tokens``
    ALL output tokens (reasoning included), as in the OpenTelemetry GenAI conventions.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    """Of ``cache_write_tokens``, those cached for one hour (Anthropic's ``ttl: 1h``), billed higher."""
    reasoning_tokens: int | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None
    billed_input_tokens: int | None = None
    """Input tokens the provider bills, when it bills other counts than it reports (Cohere ``billed_units``)."""
    billed_output_tokens: int | None = None
    """Output tokens the provider bills, when they differ from ``output_tokens``."""


class Cost(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """USD cost of one exchange, split by component; ``total_usd`` is their sum."""

    total_usd: float
    input_usd: float = 0.0
    cache_read_usd: float = 0.0
    cache_write_usd: float = 0.0
    output_usd: float = 0.0
    other_usd: float = 0.0
    currency: str = "USD"
    source: str = "genai-prices"


class Timing(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """When things happened. Absolute times are Unix nanoseconds; durations are seconds."""

    start_unix_nano: int
    end_unix_nano: int
    duration_s: float
    first_byte_s: float | None = None
    time_to_first_token_s: float | None = None
    inter_token_mean_s: float | None = None
    inter_token_max_s: float | None = None
    chunks: int = 0


class ToolCall(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One tool/function call made by the model; ``arguments`` is the JSON text as sent."""

    name: str
    id: str | None = None
    arguments: str = ""


ExtraValue: TypeAlias = str | int | float | bool | list[str]
"""A value of an ``extra`` map: scalars and lists of strings (what OpenTelemetry attributes can hold)."""


class ImageRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An image in a captured message, by reference: never the image bytes.

    ``ref`` is the image's URL (``https://``, ``gs://``, ``s3://``, a provider file id) or, for inline
    data, ``sha256:<hex>`` of the decoded bytes, with their ``size_bytes``.
    """

    ref: str
    media_type: str | None = None
    size_bytes: int | None = None


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A captured message (only when content capture is enabled)."""

    role: str
    content: str | None = None
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None
    images: list[ImageRef] = []


class RequestParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Sampling and tool parameters of the request, as the client sent them."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tool_definitions: int = 0
    tool_choice: str | None = None
    response_format: str | None = None


class NormalizedRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the accounting layer learned from the request body."""

    operation: str
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    params: RequestParams = RequestParams()
    message_count: int = 0
    user: str | None = None
    messages: list[Message] | None = None
    extra: dict[str, ExtraValue] = {}
    """Vendor-specific request fields worth keeping, keyed ``{vendor}.request.{field}`` (see README)."""


class NormalizedResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the accounting layer learned from the response (plain or streamed)."""

    id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    finish_reasons: list[str] = []
    usage: Usage | None = None
    tool_calls: list[ToolCall] = []
    output_text: str | None = None
    completed: bool = True
    error_type: str | None = None
    error_message: str | None = None
    """The provider's error text (content: recorded only with ``capture_content``), or, when
    ``error_type`` is ``None`` or ``invalid_response``, the observer's own note (always recorded)."""
    events: int = 0
    output_chars: int = 0
    """Characters of generated output (text, reasoning, refusals, tool names and arguments), counted
    even when content is not captured: the size token estimation works from when usage is missing."""
    extra: dict[str, ExtraValue] = {}
    """Vendor-specific response fields worth keeping, keyed ``{vendor}.{field}`` (see README)."""


class Attempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One try at an upstream: which provider/key, what came back, how long it took."""

    provider: str
    model: str | None = None
    key_id: str | None = None
    status: int | None = None
    error_type: str | None = None
    latency_s: float | None = None
    deployment: str | None = None
    """``{alias}/{provider}/{model}`` (or ``{provider}/{model}`` on a native route)."""
    fallback_index: int = 0
    """0 for the requested alias, 1 for its first fallback, ..."""
    start_offset_s: float | None = None
    """When the attempt started, in seconds after the exchange started (for per-attempt spans)."""
    api: str | None = None
    """The provider API this attempt spoke when it differs from the client's (a translated request),
    e.g. ``anthropic.messages`` for an ``openai.chat_completions`` request."""


class LLMRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One observed LLM exchange: what every sink exports.

    Unlike the leaf Structs, every field is encoded (defaults included): ``/logs`` readers and SQL
    queries over the stored JSON should not have to know our defaults.

    ``status`` is the HTTP status the client received (0 when no response started). ``outcome`` is
    one of ``completed``, ``client_disconnected``, ``upstream_error``, ``app_error``, ``rejected``.
    """

    request_id: str
    trace_id: str
    span_id: str
    operation: str
    api: str
    """The API the client spoke (e.g. ``openai.chat_completions``); ``served_api`` is the provider's."""
    provider: str
    status: int
    outcome: str
    timing: Timing
    parent_span_id: str | None = None
    server_span_id: str | None = None
    """The gateway's own HTTP SERVER span, between ``parent_span_id`` and the LLM span (``span_id``)."""
    session_id: str | None = None
    user: str | None = None
    method: str = "POST"
    path: str = ""
    requested_model: str | None = None
    response_model: str | None = None
    route: str | None = None
    rule: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    virtual_key: str | None = None
    team: str | None = None
    customer: str | None = None
    metadata: dict[str, str] = {}
    params: RequestParams | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    finish_reasons: list[str] = []
    tool_calls: int = 0
    usage: Usage | None = None
    cost: Cost | None = None
    error_type: str | None = None
    error_message: str | None = None
    """The gateway's own diagnosis (a timeout, an unparsable answer); the provider's error text only
    with ``capture_content`` (it can quote the prompt). Configured secrets are masked in it."""
    attempts: list[Attempt] = []
    retries: int = 0
    fallback_index: int = 0
    """Which alias served: 0 the requested one, 1 its first fallback, ..."""
    streamed: bool = False
    estimated: bool = False
    input_messages: list[Message] | None = None
    output_text: str | None = None
    extra: dict[str, ExtraValue] = {}
    """Vendor-specific fields of the request, the response and its headers, namespaced by vendor:
    ``{vendor}.{field}`` (e.g. ``openai.system_fingerprint``, ``anthropic.request_id``) and
    ``{vendor}.request.{field}`` for what the client asked (e.g. ``openai.request.service_tier``)."""
    served_api: str | None = None
    """The provider API that served the request: ``api`` itself, or the provider's own API when the
    router translated an OpenAI request (e.g. ``anthropic.messages``)."""
    deployment: str | None = None
    """The deployment of the last attempt, the one whose answer the client got (see ``attempts``)."""
    key_id: str | None = None
    """That attempt's API key: its configured name or a stable id, never the key."""
    client_request_id: str | None = None
    """The client's own ``x-request-id`` (printable ASCII, at most 128 characters). ``request_id`` is
    always ours, so no client can choose, or collide with, another's record id."""
