"""What every provider translator shares: the protocol, the unsupported-parameter rule, errors, SSE output."""

from __future__ import annotations

import binascii
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NamedTuple, Protocol, TypeVar

import msgspec

from llm_obs_middleware.asgi.messages import error_json
from llm_obs_middleware.providers.openai.chat_shapes import (
    DONE,
    ChatRequest,
    CompletionTokensDetails,
    EmbeddingsRequest,
    OpenAIUsage,
    PromptTokensDetails,
    decode_chat_request,
    decode_embeddings_request,
    present,
)
from llm_obs_middleware.records.schema import Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import ResponseObserver

__all__ = [
    "DONE",
    "OPENAI_ONLY",
    "ChatDecoding",
    "EmbeddingsDecoding",
    "EventSource",
    "EventTranslator",
    "ResponseContext",
    "StreamTranslator",
    "TranslatedError",
    "TranslationError",
    "Translator",
    "UnsupportedParams",
    "UnsupportedRule",
    "UpstreamRequest",
    "arguments_object",
    "compact_json",
    "data_url",
    "delta_seconds",
    "openai_error",
    "openai_finish_reason",
    "openai_usage",
    "raw_error_message",
]

UnsupportedRule = Literal["drop", "error"]
RequestT = TypeVar("RequestT")
EventT = TypeVar("EventT")
OPENAI_ONLY = (
    "top_logprobs",
    "logit_bias",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "verbosity",
    "service_tier",
    "store",
    "metadata",
    "prompt_cache_key",
    "safety_identifier",
)
"""Chat parameters no other provider has (the ``unsupported_params`` rule applies to them)."""
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class TranslationError(Exception):
    """The request cannot be expressed in the provider's API (answered 400, OpenAI-shaped)."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "unsupported_parameter") -> None:
        super().__init__(message)
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return error_json(str(self), "invalid_request_error", code=self.code, param=self.param)


class UpstreamRequest(NamedTuple):
    """The provider-native request a translator built."""

    path: str
    """Appended to the provider's ``base_url`` (query string included)."""
    body: bytes
    headers: list[tuple[bytes, bytes]]
    """Extra headers the provider needs (e.g. ``anthropic-version``)."""
    dropped: tuple[str, ...]
    """OpenAI parameters left out under ``unsupported_params: drop`` (reported to the client in a header)."""


class TranslatedError(NamedTuple):
    """A provider error answer in OpenAI's error format."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    retry_after: str | None


class ResponseContext(NamedTuple):
    """What a translated response says that the provider's answer may not (Bedrock and Ollama name no id)."""

    created: int
    """``created`` of the completion and its chunks (Unix seconds)."""
    model: str
    """The model, when the answer does not name it."""
    response_id: str
    """The completion id, when the answer has none."""
    include_usage: bool = False
    """Streams: end with the usage chunk (the client set ``stream_options.include_usage``)."""
    base64: bool = False
    """Embeddings: vectors as base64 float32 (the client set ``encoding_format: base64``)."""


class StreamTranslator(Protocol):
    """Turns a provider stream into OpenAI chunks, from the events its native observer decoded.

    A translated stream is parsed once. The provider's stream observer (``providers/<name>/observe.py``)
    is its only decoder: it runs the codec (SSE, NDJSON, event-stream), decodes each event into the
    provider's wire Structs, folds it into the record and hands it to its listener. The translator
    subscribes with :meth:`attach` and turns each event into OpenAI SSE bytes, which the router collects
    with :meth:`take` after feeding the observer a chunk. The router makes sure there is exactly one
    decoder: when accounting observes the answer, the observer it builds (``Exchange.observe_native``)
    is the one attached; when nothing observes (the router alone), the router builds the same observer
    itself, only to decode. The translator has no parser of its own.
    """

    def attach(self, decoder: ResponseObserver) -> None:
        """Listen to ``decoder``, the provider's stream observer (``TypeError`` for another observer)."""

    def take(self) -> bytes:
        """OpenAI SSE bytes for the events decoded since the last call (``b""`` if none)."""

    def close(self) -> bytes:
        """What is left at the end of the upstream body (events the decoder held back, then the usage
        chunk and ``[DONE]`` if the stream completed)."""


class EventSource(Protocol):
    """What a provider's stream observer offers a translator (see :class:`StreamTranslator`)."""

    def listen(self, listener: Callable[[Any], object]) -> None:
        """Call ``listener`` with each event decoded from now on, in order."""

    def flush(self) -> None:
        """Decode what the codec holds at the end of the stream (an unterminated last event)."""


class EventTranslator(Generic[EventT]):
    """A :class:`StreamTranslator` over the events of one provider's stream observer (``source``)."""

    __slots__ = ("_pending", "_source")
    source: ClassVar[type[Any]]
    """The provider's stream observer class: the only decoder this translator reads from."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._source: EventSource | None = None

    def attach(self, decoder: ResponseObserver) -> None:
        if not isinstance(decoder, self.source):
            raise TypeError(f"{type(self).__name__} reads a {self.source.__name__}, not a {type(decoder).__name__}")
        source: EventSource = decoder
        source.listen(self._translate)
        self._source = source

    def _translate(self, event: EventT) -> None:
        out = self.event(event)
        if out:
            self._pending.append(out)

    def event(self, event: EventT) -> bytes:
        """OpenAI SSE bytes for one decoded native event (``b""`` for an event the client does not see)."""
        raise NotImplementedError

    def take(self) -> bytes:
        pending = self._pending
        if not pending:
            return b""
        out = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        return out

    def _drain(self) -> bytes:
        """At the end of the body: the events the decoder held back, translated."""
        if self._source is not None:
            self._source.flush()
        return self.take()


class Translator(Protocol[RequestT]):
    """One OpenAI API (``RequestT``: its request) to one provider's API and back."""

    def decode(self, body: bytes) -> RequestT:
        """The client's request; raises ``msgspec.DecodeError`` / ``ValidationError`` when malformed."""

    def request(self, client: RequestT, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        """The native request; raises :class:`TranslationError` for what cannot be sent."""

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        """A native (non-streamed) success body in OpenAI's shape (``chat.completion``, embeddings list)."""

    def stream(self, context: ResponseContext) -> StreamTranslator:
        """A translator for a native success stream."""

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        """A native error answer in OpenAI's error format (``retry_after``: the provider's, as the router read it)."""


class ChatDecoding:
    """``decode`` of the translators of ``/v1/chat/completions``."""

    def decode(self, body: bytes) -> ChatRequest:
        return decode_chat_request(body)


class EmbeddingsDecoding:
    """``decode`` and ``stream`` of the translators of ``/v1/embeddings`` (which never stream)."""

    def decode(self, body: bytes) -> EmbeddingsRequest:
        return decode_embeddings_request(body)

    def stream(self, context: ResponseContext) -> StreamTranslator:
        raise TranslationError("embeddings are not streamed")


class UnsupportedParams:
    """Collects OpenAI parameters a provider lacks and applies the route's rule to them."""

    __slots__ = ("names", "provider")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.names: list[str] = []

    def check(self, chat: ChatRequest, names: Iterable[str]) -> None:
        """Note each of ``names`` the request sets to something other than its neutral value."""
        for name in names:
            value = getattr(chat, name)
            if value is None or value is False or (isinstance(value, msgspec.Raw) and not present(value)):
                continue
            if (name == "n" and value == 1) or (name == "service_tier" and value == "auto"):
                continue
            self.names.append(name)

    def add(self, name: str) -> None:
        self.names.append(name)

    def resolve(self, rule: UnsupportedRule) -> tuple[str, ...]:
        """The dropped names under ``drop``; under ``error`` a :class:`TranslationError` naming them."""
        if self.names and rule == "error":
            listed = ", ".join(self.names)
            raise TranslationError(
                f"{self.provider} does not support: {listed} (this route sets unsupported_params: error)",
                param=self.names[0],
            )
        return tuple(self.names)


def data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:<type>;base64,<data>`` URL, else ``None``."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise TranslationError("image data URLs must be base64-encoded (data:<type>;base64,...)", param="messages")
    try:
        binascii.a2b_base64(data[:8].ljust(8, "="))  # cheap sanity check; the provider validates the rest
    except binascii.Error:
        raise TranslationError("image data URL is not valid base64", param="messages") from None
    return media_type or "application/octet-stream", data


def compact_json(raw: msgspec.Raw) -> str:
    """A JSON document without insignificant whitespace (tool arguments as OpenAI sends them)."""
    data = bytes(raw)
    return msgspec.json.format(data, indent=-1).decode() if data and data != b"null" else "{}"


def arguments_object(arguments: str, tool_call_id: str) -> msgspec.Raw:
    """An assistant tool call's ``arguments`` string as the JSON object providers expect."""
    text = arguments.strip() or "{}"
    try:
        _decode_object(text)
    except msgspec.DecodeError:
        raise TranslationError(
            f"tool call {tool_call_id!r}: arguments must be a JSON object", param="messages", code="invalid_arguments"
        ) from None
    return msgspec.Raw(text.encode())


def openai_error(
    status: int, message: str, code: str | None, retry_after: str | None, *, error_type: str | None = None
) -> TranslatedError:
    """An OpenAI-shaped error answer keeping the provider's message, status and ``Retry-After``."""
    kind = error_type or _ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    body = error_json(message, kind, code=code)
    headers = [_JSON_CONTENT_TYPE]
    retry_after = delta_seconds(retry_after)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode("latin-1")))
    return TranslatedError(status, body, headers, retry_after)


def delta_seconds(value: str | None, now: float | None = None) -> str | None:
    """A provider's ``Retry-After`` as the gateway sends it: delta-seconds, a non-negative integer
    (RFC 9110 section 10.2.3). Fractions round up, an HTTP date becomes the seconds until it (``now``:
    Unix time, for tests); a negative, infinite or unreadable value is dropped (``None``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return str(math.ceil(seconds))


def raw_error_message(body: bytes, provider: str, status: int) -> str:
    """An error body that is not the provider's JSON, as text (its first 1000 bytes), or a line naming the status."""
    return body[:1000].decode("utf-8", "replace") or f"{provider} answered HTTP {status}"


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def openai_finish_reason(normalized: str | None) -> str:
    """The OpenAI ``finish_reason`` a translated answer carries for the record's normalized one.

    Every translator derives the client's value from the record's (``providers.base.normalize_finish_reason``
    and the provider's native map), so the two never disagree. OpenAI's vocabulary has no ``error`` or
    ``other``: both read ``stop`` (an error is also told to the client in-band, by the translator).
    """
    return _OPENAI_FINISH.get(normalized or "stop", "stop")


def openai_usage(usage: Usage | None) -> OpenAIUsage | None:
    """The record's usage (the native observer's) as OpenAI's ``usage``: the translated answer and the
    record count the same tokens. ``completion_tokens_details`` only when there were reasoning tokens."""
    if usage is None:
        return None
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
    reasoning = usage.reasoning_tokens
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cache_read_tokens or 0),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else None,
    )
