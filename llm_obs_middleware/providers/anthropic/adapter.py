"""Anthropic Messages API: ``POST /v1/messages``, plain and streamed (SSE with named events).

Native route: ``/{provider}/v1/messages`` goes to ``{base_url}/v1/messages`` (``base_url`` is the API
root, e.g. ``https://api.anthropic.com``, as for the SDK). The key travels in ``x-api-key``; the
client's ``anthropic-version`` and ``anthropic-beta`` headers pass through. Other Anthropic
endpoints (``/v1/messages/count_tokens``, batches, models) are proxied unobserved by the router.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._media import inline_image, url_image
from llm_obs_middleware.providers.anthropic.observe import (
    MessagesErrorObserver,
    MessagesJSONObserver,
    MessagesStreamObserver,
)
from llm_obs_middleware.providers.anthropic.wire import (
    ERROR_TYPES,
    CapturedMessage,
    ImageSource,
    MessagesRequest,
    TextPart,
)
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint
from llm_obs_middleware.records.schema import ExtraValue, ImageRef, Message, NormalizedRequest, RequestParams, ToolCall

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.providers.base import ProviderAdapter

__all__ = ["ADAPTERS", "MESSAGES", "AnthropicAdapter", "error_body", "error_event"]

MESSAGES = Endpoint("anthropic.messages", "chat")
_PATHS = frozenset({"/v1/messages"})
_decode_request = msgspec.json.Decoder(MessagesRequest).decode
_decode_captured = msgspec.json.Decoder(list[CapturedMessage]).decode
_encode = msgspec.json.Encoder().encode


def error_body(kind: str, message: str, request_id: str | None = None) -> bytes:
    """Anthropic's error object: the body of an error status, and the data of an ``error`` event."""
    error = {"type": "error", "error": {"type": kind, "message": message}}
    return _encode(error if request_id is None else {**error, "request_id": request_id})


def error_event(kind: str, message: str) -> bytes:
    """The in-band ``event: error`` that ends a stream; Anthropic's SDK raises an APIStatusError for it."""
    return b"event: error\ndata: " + error_body(kind, message) + b"\n\n"


def _text(parts: str | Sequence[TextPart] | None) -> str | None:
    if parts is None or isinstance(parts, str):
        return parts
    return "".join(part.text for part in parts if part.type == "text" and part.text) or None


def _image(source: ImageSource | None) -> ImageRef | None:
    """An ``image`` block's source as a reference (base64 data digested, URLs and file ids kept)."""
    if source is None:
        return None
    if source.data is not None:
        return inline_image(source.data, source.media_type)
    if source.url is not None:
        return url_image(source.url, source.media_type)
    if source.file_id is not None:
        return ImageRef(ref=f"file:{source.file_id}", media_type=source.media_type)
    return None


def _captured_messages(request: MessagesRequest) -> list[Message]:
    messages = []
    system = _text(request.system)
    if system:
        messages.append(Message(role="system", content=system))
    raw = request.messages
    for item in _decode_captured(b"[" + b",".join(bytes(part) for part in raw) + b"]") if raw else ():
        content = item.content
        if content is None or isinstance(content, str):
            messages.append(Message(role=item.role, content=content))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        images: list[ImageRef] = []
        result_id = None
        for block in content:
            if block.type == "text" and block.text:
                texts.append(block.text)
            elif block.type == "image" and (image := _image(block.source)) is not None:
                images.append(image)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name or "", arguments=bytes(block.input).decode()))
            elif block.type == "tool_result":
                result_id = result_id or block.tool_use_id
                if (result := _text(block.content)) is not None:
                    texts.append(result)
                if not isinstance(block.content, str):
                    images.extend(i for part in block.content or () if (i := _image(part.source)) is not None)
            # Documents are not captured (the schema holds text, images, tool calls and results).
        messages.append(
            Message(
                role=item.role,
                content="".join(texts) or None,
                tool_calls=calls,
                tool_call_id=result_id,
                images=images,
            )
        )
    return messages


def _request_extra(request: MessagesRequest) -> dict[str, ExtraValue]:
    if request.service_tier is None:
        return {}
    return {"anthropic.request.service_tier": request.service_tier}


class AnthropicAdapter(AdapterDefaults):
    """Recognises ``POST /v1/messages``; decodes Messages requests and observes their responses."""

    provider_name = "anthropic"
    response_header_extras: Mapping[bytes, str] = {b"request-id": "anthropic.request_id"}
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.ANTHROPIC

    def match(self, method: str, path: str) -> Endpoint | None:
        return MESSAGES if method == "POST" and path in _PATHS else None

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        try:
            request = _decode_request(body)
            messages = _captured_messages(request) if capture_content else None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        choice = request.tool_choice
        return NormalizedRequest(
            operation=endpoint.operation,
            model=request.model,
            stream=bool(request.stream),
            include_usage=True,  # message_start and message_delta always carry usage
            params=RequestParams(
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_tokens,
                stop=request.stop_sequences,
                tool_definitions=len(request.tools) if request.tools else 0,
                tool_choice=choice.type if choice is not None else None,
            ),
            message_count=len(request.messages),
            user=request.metadata.user_id if request.metadata is not None else None,
            messages=messages,
            extra=_request_extra(request),
        )

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        if status >= 400:
            return MessagesErrorObserver(status)
        capture = exchange.request is not None and exchange.request.messages is not None
        return MessagesStreamObserver(exchange, capture) if streamed else MessagesJSONObserver(capture)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-api-key", api_key.encode())]

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        # Anthropic's own mid-stream error event (its SDK skips unnamed data events).
        if not content_type.startswith(b"text/event-stream"):
            return b""
        return error_event(ERROR_TYPES[504] if error_type == "upstream_timeout" else ERROR_TYPES[500], message)


ADAPTERS: dict[str, ProviderAdapter] = {"anthropic": AnthropicAdapter()}
