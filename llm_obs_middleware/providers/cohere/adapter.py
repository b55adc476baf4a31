"""Cohere v2 chat (``POST /v2/chat``, plain and streamed: SSE with named events, ``data: [DONE]``) and
embed (``POST /v2/embed``, usage from ``meta.billed_units.input_tokens``, the only count it reports).

Native routes: ``/{provider}/v2/chat`` goes to ``{base_url}/v2/chat`` (``base_url`` is the API root,
e.g. ``https://api.cohere.com``, as for the SDK), ``/v2/embed`` likewise. The key travels as
``Authorization: Bearer``. Other Cohere endpoints (rerank, the v1 API) are proxied unobserved by the router.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._media import url_image
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint
from llm_obs_middleware.providers.cohere.observe import ChatErrorObserver, ChatJSONObserver, ChatStreamObserver
from llm_obs_middleware.providers.cohere.wire import CapturedMessage, ChatRequest, EmbedRequest
from llm_obs_middleware.records.schema import (
    ImageRef,
    Message,
    NormalizedRequest,
    NormalizedResponse,
    RequestParams,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.providers.base import ProviderAdapter

__all__ = ["ADAPTERS", "CHAT", "EMBED", "CohereAdapter", "error_body", "error_event"]

CHAT = Endpoint("cohere.chat", "chat")
EMBED = Endpoint("cohere.embed", "embeddings")
_ENDPOINTS = {"/v2/chat": CHAT, "/v2/embed": EMBED}


class _BilledUnits(msgspec.Struct):
    input_tokens: int | float | None = None


class _EmbedMeta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _EmbedResponse(msgspec.Struct):
    id: str | None = None
    meta: _EmbedMeta | None = None


_decode_request = msgspec.json.Decoder(ChatRequest).decode
_decode_embed_request = msgspec.json.Decoder(EmbedRequest).decode
_decode_embed_response = msgspec.json.Decoder(_EmbedResponse).decode
_decode_captured = msgspec.json.Decoder(list[CapturedMessage]).decode
_encode = msgspec.json.Encoder().encode


def error_body(message: str, request_id: str | None = None) -> bytes:
    """Cohere's error body: a message and the request's id (no error type)."""
    return _encode({"message": message} if request_id is None else {"id": request_id, "message": message})


def error_event(message: str) -> bytes:
    """How Cohere reports a failed generation in a stream: its last event, ``message-end`` with
    ``finish_reason`` ``ERROR`` and the error text (its SDK skips events it cannot parse)."""
    body = _encode({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": message}})
    return b"event: message-end\ndata: " + body + b"\n\n"


def _captured_messages(raw: list[msgspec.Raw]) -> list[Message]:
    messages: list[Message] = []
    for item in _decode_captured(b"[" + b",".join(bytes(part) for part in raw) + b"]") if raw else ():
        content = item.content
        images: list[ImageRef] = []
        if isinstance(content, list):
            # Text parts, and tool results' documents as their JSON; images as references.
            images = [url_image(part.image_url.url) for part in content if part.image_url and part.image_url.url]
            pieces = [part.text if part.type == "text" else bytes(part.document).decode() for part in content]
            content = "".join(piece for piece in pieces if piece) or None
        calls = [
            ToolCall(id=call.id, name=call.function.name or "", arguments=call.function.arguments or "")
            for call in item.tool_calls or ()
            if call.function is not None
        ]
        messages.append(
            Message(role=item.role, content=content, tool_calls=calls, tool_call_id=item.tool_call_id, images=images)
        )
    return messages


class CohereAdapter(AdapterDefaults):
    """Recognises ``POST /v2/chat`` and ``POST /v2/embed``; decodes their requests and observes their responses."""

    provider_name = "cohere"
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.COHERE

    def match(self, method: str, path: str) -> Endpoint | None:
        return _ENDPOINTS.get(path) if method == "POST" else None

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        try:
            if endpoint is EMBED:
                embed = _decode_embed_request(body)
                count = len(embed.texts or ()) + len(embed.images or ()) + len(embed.inputs or ())
                return NormalizedRequest(operation=endpoint.operation, model=embed.model, message_count=count)
            request = _decode_request(body)
            messages = _captured_messages(request.messages) if capture_content else None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        response_format = request.response_format
        return NormalizedRequest(
            operation=endpoint.operation,
            model=request.model,
            stream=bool(request.stream),
            include_usage=True,  # message-end always carries usage
            params=RequestParams(
                temperature=request.temperature,
                top_p=request.p,
                max_tokens=request.max_tokens,
                stop=request.stop_sequences,
                seed=request.seed,
                frequency_penalty=request.frequency_penalty,
                presence_penalty=request.presence_penalty,
                tool_definitions=len(request.tools) if request.tools else 0,
                # REQUIRED / NONE, in the lower case of the other providers' values.
                tool_choice=request.tool_choice.lower() if request.tool_choice else None,
                response_format=response_format.type if response_format is not None else None,
            ),
            message_count=len(request.messages),
            messages=messages,
        )

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        if status >= 400:
            return ChatErrorObserver(status)
        if endpoint is EMBED:
            return _EmbedObserver(exchange.served_model or (exchange.request.model if exchange.request else None))
        capture = exchange.request is not None and exchange.request.messages is not None
        return ChatStreamObserver(exchange, capture) if streamed else ChatJSONObserver(exchange, capture)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + api_key.encode())]

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        return error_event(message) if content_type.startswith(b"text/event-stream") else b""


class _EmbedObserver(BufferedBody):
    """A ``/v2/embed`` body: its only count is the billed input tokens; it names no model."""

    __slots__ = ("_model",)

    def __init__(self, model: str | None) -> None:
        super().__init__()
        self._model = model

    def _result(self, body: bytes) -> NormalizedResponse:
        response = _decode_embed_response(body)
        billed = response.meta.billed_units if response.meta is not None else None
        count = int(billed.input_tokens) if billed is not None and billed.input_tokens is not None else None
        usage = Usage(input_tokens=count, total_tokens=count, billed_input_tokens=count) if count is not None else None
        return NormalizedResponse(id=response.id, model=self._model, usage=usage)


ADAPTERS: dict[str, ProviderAdapter] = {"cohere": CohereAdapter()}
