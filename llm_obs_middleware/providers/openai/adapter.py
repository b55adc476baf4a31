"""OpenAI wire format: chat completions, responses and embeddings (and every OpenAI-compatible server)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.asgi.messages import error_json
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._media import url_image
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint, PreparedBody, decode_top_level
from llm_obs_middleware.providers.openai.observe import (
    ChatJSONObserver,
    ChatStreamObserver,
    EmbeddingsObserver,
    ErrorObserver,
)
from llm_obs_middleware.providers.openai.observe_responses import ResponsesJSONObserver, ResponsesStreamObserver
from llm_obs_middleware.providers.openai.wire import (
    CapturedInputItem,
    CapturedMessage,
    ChatRequest,
    EmbeddingsRequest,
    ResponsesRequest,
)
from llm_obs_middleware.records.schema import ExtraValue, ImageRef, Message, NormalizedRequest, RequestParams, ToolCall
from llm_obs_middleware.upstream.paths import encode_path

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver

__all__ = ["CHAT", "EMBEDDINGS", "RESPONSES", "OpenAIAdapter", "content_images"]

CHAT = Endpoint("openai.chat_completions", "chat", "/chat/completions")
RESPONSES = Endpoint("openai.responses", "chat", "/responses")
EMBEDDINGS = Endpoint("openai.embeddings", "embeddings", "/embeddings")
_ENDPOINTS = {
    "/v1/chat/completions": CHAT,
    "/chat/completions": CHAT,
    "/v1/responses": RESPONSES,
    "/responses": RESPONSES,
    "/v1/embeddings": EMBEDDINGS,
    "/embeddings": EMBEDDINGS,
}
_decode_chat = msgspec.json.Decoder(ChatRequest).decode
_decode_responses = msgspec.json.Decoder(ResponsesRequest).decode
_decode_embeddings = msgspec.json.Decoder(EmbeddingsRequest).decode
_decode_captured = msgspec.json.Decoder(list[CapturedMessage]).decode
_decode_input = msgspec.json.Decoder(list[CapturedInputItem]).decode
_decode_str = msgspec.json.Decoder(str).decode
_decode_options = msgspec.json.Decoder(dict[str, msgspec.Raw] | None).decode
_encode = msgspec.json.Encoder().encode
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')


def _tool_choice(value: str | dict[str, Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    kind = value.get("type")
    return str(kind) if kind else "object"


def _stop(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def content_images(parts: list[dict[str, Any]]) -> list[ImageRef]:
    """``image_url`` parts (``{"url": ...}`` or a bare URL string) as references; ``data:`` URLs digested."""
    images = []
    for part in parts:
        if part.get("type") != "image_url":
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str):
            images.append(url_image(url))
    return images


def _captured_messages(raw: list[msgspec.Raw]) -> list[Message]:
    decoded = _decode_captured(b"[" + b",".join(bytes(part) for part in raw) + b"]")
    messages = []
    for item in decoded:
        content = item.content
        images: list[ImageRef] = []
        if isinstance(content, list):
            images = content_images(content)
            content = "".join(str(part.get("text", "")) for part in content if part.get("type") == "text") or None
        calls = [
            ToolCall(id=call.id, name=call.function.name or "", arguments=call.function.arguments or "")
            for call in item.tool_calls or ()
            if call.function is not None
        ]
        messages.append(
            Message(role=item.role, content=content, tool_calls=calls, tool_call_id=item.tool_call_id, images=images)
        )
    return messages


def _captured_input(raw: list[msgspec.Raw]) -> list[Message]:
    """Responses ``input`` items: messages (text, images), function calls and their outputs."""
    messages = []
    for item in _decode_input(b"[" + b",".join(bytes(part) for part in raw) + b"]"):
        if item.type == "function_call":
            call = ToolCall(id=item.call_id, name=item.name or "", arguments=item.arguments or "")
            messages.append(Message(role="assistant", tool_calls=[call]))
        elif item.type == "function_call_output":
            output = bytes(item.output)
            text = _decode_str(output) if output.startswith(b'"') else output.decode() or None
            messages.append(Message(role="tool", content=text, tool_call_id=item.call_id))
        elif item.type == "message":
            content = item.content
            if content is None or isinstance(content, str):
                messages.append(Message(role=item.role, content=content))
                continue
            images = [
                url_image(part.image_url) if part.image_url else ImageRef(ref=f"file:{part.file_id}")
                for part in content
                if part.type == "input_image" and (part.image_url or part.file_id)
            ]
            text = "".join(part.text for part in content if part.text and part.type in ("input_text", "output_text"))
            messages.append(Message(role=item.role, content=text or None, images=images))
        # Other items (reasoning, built-in tool calls) are not captured.
    return messages


def _request_extra(service_tier: str | None) -> dict[str, ExtraValue]:
    return {"openai.request.service_tier": service_tier} if service_tier else {}


class OpenAIAdapter(AdapterDefaults):
    """Recognises ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/embeddings`` (``/v1`` optional).

    Args:
        provider_name: ``gen_ai.provider.name`` of the traffic (OpenAI-compatible servers share the format).
    """

    openai_compatible = True
    response_header_extras: Mapping[bytes, str] = {b"x-request-id": "openai.request_id"}
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.OPENAI

    def __init__(self, provider_name: str = "openai") -> None:
        self.provider_name = provider_name

    def match(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        return _ENDPOINTS.get(path)

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        # base_url carries the version prefix (as an SDK's base_url does): /groq/v1/chat/completions
        # goes to {base_url}/chat/completions.
        return endpoint.upstream_path

    def passthrough_path(self, path: str) -> str:
        # As upstream_path: base_url carries /v1, so the SDK's /v1/models goes to {base_url}/models.
        if path == "/v1" or path.startswith("/v1/"):
            path = path[3:]
        return encode_path(path)

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        # The openai SDK raises an APIError for a data event with an "error" member.
        if not content_type.startswith(b"text/event-stream"):
            return b""
        return b"data: " + error_json(message, error_type, code=error_type) + b"\n\n"

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        try:
            if endpoint is CHAT:
                return self._decode_chat(body, capture_content)
            if endpoint is RESPONSES:
                return self._decode_responses(body, capture_content)
            request = _decode_embeddings(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        return NormalizedRequest(operation=endpoint.operation, model=request.model, user=request.user)

    def _decode_chat(self, body: bytes, capture: bool) -> NormalizedRequest:
        request = _decode_chat(body)
        options = request.stream_options
        return NormalizedRequest(
            operation="chat",
            model=request.model,
            stream=bool(request.stream),
            include_usage=bool(options is not None and options.include_usage),
            params=RequestParams(
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_completion_tokens
                if request.max_completion_tokens is not None
                else request.max_tokens,
                stop=_stop(request.stop),
                n=request.n,
                seed=request.seed,
                frequency_penalty=request.frequency_penalty,
                presence_penalty=request.presence_penalty,
                tool_definitions=len(request.tools) if request.tools else 0,
                tool_choice=_tool_choice(request.tool_choice),
                response_format=request.response_format.type if request.response_format else None,
            ),
            message_count=len(request.messages),
            user=request.user,
            messages=_captured_messages(request.messages) if capture and request.messages else None,
            extra=_request_extra(request.service_tier),
        )

    def _decode_responses(self, body: bytes, capture: bool) -> NormalizedRequest:
        request = _decode_responses(body)
        items = request.input
        messages = None
        if capture:
            messages = [Message(role="system", content=request.instructions)] if request.instructions else []
            if isinstance(items, str):
                messages.append(Message(role="user", content=items))
            elif items:
                messages.extend(_captured_input(items))
        return NormalizedRequest(
            operation="chat",
            model=request.model,
            stream=bool(request.stream),
            include_usage=True,  # the final response.completed event always carries usage
            params=RequestParams(
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_output_tokens,
                tool_definitions=len(request.tools) if request.tools else 0,
                tool_choice=_tool_choice(request.tool_choice),
            ),
            message_count=1 if isinstance(items, str) else len(items or ()),
            user=request.user,
            messages=messages,
            extra=_request_extra(request.service_tier),
        )

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        capture = False if exchange.request is None else exchange.request.messages is not None
        if status >= 400:
            return ErrorObserver(status)
        if endpoint is CHAT:
            return ChatStreamObserver(exchange, capture) if streamed else ChatJSONObserver(capture)
        if endpoint is RESPONSES:
            return ResponsesStreamObserver(exchange, capture) if streamed else ResponsesJSONObserver(capture)
        return EmbeddingsObserver()

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        # Usage is always wanted: ask for it on streamed chat and hide it again if the client did not.
        add_usage = endpoint is CHAT and request.stream and not request.include_usage
        if model == request.model and not add_usage:
            return PreparedBody(body, False)
        # Re-encode only the top level; nested values travel as the client's own bytes (msgspec.Raw).
        fields = decode_top_level(body)
        fields["model"] = msgspec.Raw(_encode(model))
        if add_usage:
            # Keep the client's other stream options (e.g. include_obfuscation); only force include_usage.
            options = _decode_options(fields["stream_options"]) if "stream_options" in fields else None
            if options:
                options["include_usage"] = msgspec.Raw(b"true")
                fields["stream_options"] = msgspec.Raw(_encode(options))
            else:
                fields["stream_options"] = _INCLUDE_USAGE
        return PreparedBody(_encode(fields), add_usage)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + api_key.encode())]
