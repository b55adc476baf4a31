"""Ollama's native API: ``/api/chat``, ``/api/generate`` (NDJSON streams) and ``/api/embed``.

Native routes forward ``/{provider}/api/chat``, ``/api/generate``, ``/api/embed`` and the older
``/api/embeddings``; Ollama's OpenAI-compatible ``/{provider}/v1/chat/completions``,
``/v1/responses`` and ``/v1/embeddings`` are observed in the OpenAI format. Other endpoints
(``/api/tags``, ``/api/show``...) are proxied unobserved. Unlike OpenAI, a chat or generate request
without ``"stream"`` streams. Ollama needs no key; a configured one is sent as a bearer token
(ollama.com). https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._media import inline_image
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint, PreparedBody
from llm_obs_middleware.providers.ollama.observe import (
    EmbedObserver,
    ErrorObserver,
    ReplyJSONObserver,
    ReplyStreamObserver,
)
from llm_obs_middleware.providers.ollama.wire import (
    CapturedMessage,
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    Options,
)
from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter
from llm_obs_middleware.records.schema import ImageRef, Message, NormalizedRequest, RequestParams, ToolCall

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.providers.base import ProviderAdapter

__all__ = ["ADAPTERS", "CHAT", "EMBED", "GENERATE", "OllamaAdapter"]

CHAT = Endpoint("ollama.chat", "chat")
GENERATE = Endpoint("ollama.generate", "text_completion")
EMBED = Endpoint("ollama.embed", "embeddings")
_ENDPOINTS = {"/api/chat": CHAT, "/api/generate": GENERATE, "/api/embed": EMBED, "/api/embeddings": EMBED}

_decode_chat = msgspec.json.Decoder(ChatRequest).decode
_decode_generate = msgspec.json.Decoder(GenerateRequest).decode
_decode_embed = msgspec.json.Decoder(EmbedRequest).decode
_decode_captured = msgspec.json.Decoder(list[CapturedMessage]).decode
_encode = msgspec.json.Encoder().encode


def _params(options: Options | None, format_: msgspec.Raw, tools: int = 0) -> RequestParams:
    response_format = None
    if format_:
        raw = bytes(format_).strip()
        # "format": "json", or a JSON schema object (structured outputs)
        response_format = "json" if raw == b'"json"' else "json_schema" if raw.startswith(b"{") else None
    if options is None:
        return RequestParams(tool_definitions=tools, response_format=response_format)
    stop = options.stop
    return RequestParams(
        temperature=options.temperature,
        top_p=options.top_p,
        max_tokens=options.num_predict,
        stop=[stop] if isinstance(stop, str) else stop,
        seed=options.seed,
        frequency_penalty=options.frequency_penalty,
        presence_penalty=options.presence_penalty,
        tool_definitions=tools,
        response_format=response_format,
    )


def _captured(raw: list[msgspec.Raw]) -> list[Message]:
    messages = []
    for item in _decode_captured(b"[" + b",".join(bytes(part) for part in raw) + b"]"):
        calls = [
            ToolCall(
                id=call.id,
                name=call.function.name or "",
                arguments=bytes(call.function.arguments).decode() if call.function.arguments else "{}",
            )
            for call in item.tool_calls or ()
            if call.function is not None
        ]
        messages.append(
            Message(
                role=item.role,
                content=item.content or None,
                tool_calls=calls,
                tool_call_id=item.tool_call_id,
                images=_images(item.images),
            )
        )
    return messages


def _images(images: list[str] | None) -> list[ImageRef]:
    """Ollama's ``images`` (base64, no media type given) as references."""
    return [inline_image(data, None) for data in images or ()]


class OllamaAdapter(AdapterDefaults):
    """Recognises Ollama's ``/api/...`` endpoints and its OpenAI-compatible ``/v1/...`` ones."""

    provider_name = "ollama"
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.OLLAMA

    def __init__(self) -> None:
        self._openai = OpenAIAdapter("ollama")

    def match(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        if path.startswith("/v1/"):
            return self._openai.match(method, path)
        return _ENDPOINTS.get(path)

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        if endpoint.api.startswith("openai."):
            return self._openai.decode_request(endpoint, body, capture_content=capture_content)
        try:
            if endpoint is CHAT:
                chat = _decode_chat(body)
                tools = len(chat.tools) if chat.tools else 0
                return NormalizedRequest(
                    operation=endpoint.operation,
                    model=chat.model,
                    stream=chat.stream is not False,  # Ollama streams unless told not to
                    include_usage=True,  # the final line always carries the counts
                    params=_params(chat.options, chat.format, tools),
                    message_count=len(chat.messages),
                    messages=_captured(chat.messages) if capture_content and chat.messages else None,
                )
            if endpoint is GENERATE:
                return self._decode_generate(body, capture_content)
            embed = _decode_embed(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        count = len(embed.input) if isinstance(embed.input, list) else 1
        return NormalizedRequest(operation=endpoint.operation, model=embed.model, message_count=count)

    @staticmethod
    def _decode_generate(body: bytes, capture: bool) -> NormalizedRequest:
        request = _decode_generate(body)
        messages = None
        if capture:
            messages = [Message(role="system", content=request.system)] if request.system else []
            if request.prompt or request.images:
                messages.append(Message(role="user", content=request.prompt or None, images=_images(request.images)))
        return NormalizedRequest(
            operation=GENERATE.operation,
            model=request.model,
            stream=request.stream is not False,
            include_usage=True,
            params=_params(request.options, request.format),
            message_count=bool(request.system) + bool(request.prompt),
            messages=messages,
        )

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        if endpoint.api.startswith("openai."):
            return self._openai.observer(endpoint, exchange, streamed=streamed, status=status)
        if status >= 400:
            return ErrorObserver(status)
        if endpoint is EMBED:
            return EmbedObserver()
        capture = exchange.request is not None and exchange.request.messages is not None
        return ReplyStreamObserver(exchange, capture) if streamed else ReplyJSONObserver(capture)

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        if endpoint.api.startswith("openai."):
            return self._openai.prepare_body(endpoint, request, body, model)
        return super().prepare_body(endpoint, request, body, model)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + api_key.encode())]

    def is_stream(self, content_type: bytes) -> bool:
        return content_type.startswith((b"application/x-ndjson", b"text/event-stream"))

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        # An {"error": ...} line, as Ollama ends a failed stream (its SDK raises a ResponseError);
        # its OpenAI-compatible API streams SSE, with OpenAI's error event.
        if content_type.startswith(b"application/x-ndjson"):
            return _encode({"error": message}) + b"\n"
        return self._openai.stream_error(content_type, message, error_type)


ADAPTERS: dict[str, ProviderAdapter] = {"ollama": OllamaAdapter()}
