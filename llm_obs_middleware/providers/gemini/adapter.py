"""Google Gemini (Generative Language API): generateContent, its SSE stream, and embeddings.

Native routes forward ``/{provider}/v1beta/models/{model}:generateContent`` (also ``v1`` and
``v1alpha``), ``:streamGenerateContent?alt=sse``, ``:embedContent`` and ``:batchEmbedContents``;
the model is the one in the path (an alias of the provider is rewritten there). Other Gemini
endpoints (``:countTokens``, ``GET /v1beta/models``...) are proxied unobserved. The key goes in
``x-goog-api-key``; a client's own ``x-goog-api-key`` or ``?key=`` never reaches the upstream.
https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers import _passthrough_endpoints
from llm_obs_middleware.providers._media import inline_image, url_image
from llm_obs_middleware.providers.base import AdapterDefaults, Endpoint, PreparedBody, decode_top_level
from llm_obs_middleware.providers.gemini.observe import (
    EmbedObserver,
    ErrorObserver,
    GenerateJSONObserver,
    GenerateStreamObserver,
)
from llm_obs_middleware.providers.gemini.wire import (
    BatchEmbedRequest,
    Blob,
    CapturedContent,
    EmbedRequest,
    GenerateRequest,
    Tool,
    error_status,
    first,
    retry_after,
)
from llm_obs_middleware.records.schema import ImageRef, Message, NormalizedRequest, RequestParams, ToolCall
from llm_obs_middleware.upstream.paths import encode_path

if TYPE_CHECKING:
    import httpx

    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.config.settings import ProviderConfig
    from llm_obs_middleware.providers.base import ProviderAdapter

__all__ = ["ADAPTERS", "BATCH_EMBED", "EMBED", "GENERATE", "PATH", "STREAM_GENERATE", "GeminiAdapter"]

GENERATE = Endpoint("gemini.generate_content", "generate_content")
STREAM_GENERATE = Endpoint("gemini.stream_generate_content", "generate_content")
EMBED = Endpoint("gemini.embed_content", "embeddings")
BATCH_EMBED = Endpoint("gemini.batch_embed_contents", "embeddings")
_BY_METHOD = {
    "generateContent": GENERATE,
    "streamGenerateContent": STREAM_GENERATE,
    "embedContent": EMBED,
    "batchEmbedContents": BATCH_EMBED,
}
PATH = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(\w+)$")
"""A Generative Language API path: version, model, method (``/v1beta/models/gemini-2.0-flash:generateContent``)."""
_ROLES = {"model": "assistant"}
_API_KEY = "x-goog-api-key"

_decode_generate = msgspec.json.Decoder(GenerateRequest).decode
_decode_embed = msgspec.json.Decoder(EmbedRequest).decode
_decode_batch = msgspec.json.Decoder(BatchEmbedRequest).decode
_decode_captured = msgspec.json.Decoder(list[CapturedContent]).decode
_decode_captured_one = msgspec.json.Decoder(CapturedContent).decode
_decode_requests = msgspec.json.Decoder(list[dict[str, msgspec.Raw]]).decode
_encode = msgspec.json.Encoder().encode


def _tool_definitions(tools: list[Tool] | None) -> int:
    """Function declarations count one each; a built-in tool (``googleSearch``...) counts as one."""
    count = 0
    for tool in tools or ():
        declarations = first(tool.functionDeclarations, tool.function_declarations)
        count += len(declarations) if declarations is not None else 1
    return count


def _image(inline: Blob | None, file: Blob | None) -> ImageRef | None:
    """An ``inlineData`` part (digested) or a ``fileData`` part (its URI) as a reference."""
    if inline is not None and inline.data is not None:
        return inline_image(inline.data, first(inline.mimeType, inline.mime_type))
    uri = first(file.fileUri, file.file_uri) if file is not None else None
    if file is not None and uri is not None:
        return url_image(uri, first(file.mimeType, file.mime_type))
    return None


def _message(content: CapturedContent, role: str | None = None) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[str] = []
    images: list[ImageRef] = []
    result_id: str | None = None
    for part in content.parts:
        if part.text and not part.thought:
            texts.append(part.text)
        image = _image(first(part.inlineData, part.inline_data), first(part.fileData, part.file_data))
        if image is not None:
            images.append(image)
        call = first(part.functionCall, part.function_call)
        if call is not None:
            arguments = bytes(call.args).decode() if call.args else "{}"
            calls.append(ToolCall(id=call.id, name=call.name or "", arguments=arguments))
        result = first(part.functionResponse, part.function_response)
        if result is not None:
            results.append(bytes(result.response).decode() if result.response else "{}")
            result_id = result_id or result.id
    if results and not texts and not calls:  # a user turn carrying function results is a tool message
        return Message(role="tool", content="\n".join(results), tool_call_id=result_id)
    role = role or _ROLES.get(content.role or "user", content.role or "user")
    return Message(role=role, content="".join(texts) or None, tool_calls=calls, images=images)


def _captured(request: GenerateRequest) -> list[Message]:
    messages = []
    system = request.systemInstruction or request.system_instruction
    if system and bytes(system) != b"null":
        messages.append(_message(_decode_captured_one(system), "system"))
    if request.contents:
        raw = b"[" + b",".join(bytes(part) for part in request.contents) + b"]"
        messages.extend(_message(content) for content in _decode_captured(raw))
    return messages


class GeminiAdapter(AdapterDefaults):
    """Recognises Gemini's ``models/{model}:method`` paths; the key travels in ``x-goog-api-key``."""

    provider_name = "gcp.gemini"
    passthrough_endpoints: Sequence[str] = _passthrough_endpoints.GEMINI

    def match(self, method: str, path: str) -> Endpoint | None:
        if method != "POST":
            return None
        found = PATH.match(path)
        return _BY_METHOD.get(found.group(3)) if found is not None else None

    def path_model(self, endpoint: Endpoint, path: str) -> str | None:
        found = PATH.match(path)
        return found.group(2) if found is not None else None

    def upstream_path(self, endpoint: Endpoint, path: str, model: str) -> str:
        found = PATH.match(path)
        if found is None or found.group(2) == model:
            return encode_path(path)
        return f"/{found.group(1)}/models/{quote(model, safe='')}:{found.group(3)}"

    def decode_request(self, endpoint: Endpoint, body: bytes, *, capture_content: bool) -> NormalizedRequest:
        try:
            if endpoint is EMBED or endpoint is BATCH_EMBED:
                return self._decode_embeddings(endpoint, body)
            request = _decode_generate(body)
            messages = _captured(request) if capture_content else None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"request body is not a valid {endpoint.api} request: {exc}") from None
        config = first(request.generationConfig, request.generation_config)
        tool_config = first(request.toolConfig, request.tool_config)
        calling = first(tool_config.functionCallingConfig, tool_config.function_calling_config) if tool_config else None
        params = RequestParams(
            tool_definitions=_tool_definitions(request.tools), tool_choice=calling.mode if calling else None
        )
        if config is not None:
            params = msgspec.structs.replace(
                params,
                temperature=config.temperature,
                top_p=first(config.topP, config.top_p),
                max_tokens=first(config.maxOutputTokens, config.max_output_tokens),
                stop=first(config.stopSequences, config.stop_sequences),
                n=first(config.candidateCount, config.candidate_count),
                seed=config.seed,
                presence_penalty=first(config.presencePenalty, config.presence_penalty),
                frequency_penalty=first(config.frequencyPenalty, config.frequency_penalty),
                response_format=first(config.responseMimeType, config.response_mime_type),
            )
        return NormalizedRequest(
            operation=endpoint.operation,
            stream=endpoint is STREAM_GENERATE,
            include_usage=True,  # every chunk carries usageMetadata
            params=params,
            message_count=len(request.contents),
            messages=messages,
        )

    @staticmethod
    def _decode_embeddings(endpoint: Endpoint, body: bytes) -> NormalizedRequest:
        if endpoint is EMBED:
            embed = _decode_embed(body)
            model, count = embed.model, 1
        else:
            batch = _decode_batch(body)
            model = batch.requests[0].model if batch.requests else None
            count = len(batch.requests)
        return NormalizedRequest(
            operation=endpoint.operation, model=model.removeprefix("models/") if model else None, message_count=count
        )

    def observer(self, endpoint: Endpoint, exchange: Exchange, *, streamed: bool, status: int) -> ResponseObserver:
        if status >= 400:
            return ErrorObserver(status)
        if endpoint is EMBED or endpoint is BATCH_EMBED:
            return EmbedObserver()
        capture = exchange.request is not None and exchange.request.messages is not None
        return GenerateStreamObserver(exchange, capture) if streamed else GenerateJSONObserver(capture)

    def prepare_body(self, endpoint: Endpoint, request: NormalizedRequest, body: bytes, model: str) -> PreparedBody:
        # The model lives in the URL (see upstream_path); embedding requests also name it per input,
        # and those names must agree with the path, so an alias is rewritten there too.
        if endpoint is GENERATE or endpoint is STREAM_GENERATE or request.model in (None, model):
            return PreparedBody(body, False)
        name = msgspec.Raw(_encode(f"models/{model}"))
        fields = decode_top_level(body)
        if endpoint is EMBED:
            fields["model"] = name
        elif "requests" in fields:
            requests = _decode_requests(fields["requests"])
            for item in requests:
                if "model" in item:
                    item["model"] = name
            fields["requests"] = msgspec.Raw(_encode(requests))
        return PreparedBody(_encode(fields), False)

    def auth_headers(self, api_key: str) -> list[tuple[bytes, bytes]]:
        return [(_API_KEY.encode(), api_key.encode())]

    def stream_error(self, content_type: bytes, message: str, error_type: str) -> bytes:
        # A google.rpc.Status as Gemini streams its own errors; google-genai raises it as an APIError
        # by its numeric code.
        if not content_type.startswith(b"text/event-stream"):
            return b""  # a JSON-array stream (no alt=sse) has no place for one
        timeout = error_type == "upstream_timeout"
        status = {"code": 504, "status": "DEADLINE_EXCEEDED"} if timeout else {"code": 502, "status": "UNAVAILABLE"}
        return b"data: " + _encode({"error": {**status, "message": message}}) + b"\n\n"

    def retry_after(self, status: int, body: bytes) -> str | None:
        """Gemini's 429s say when to retry in the body (``google.rpc.RetryInfo``), not in a header:
        that delay as delta-seconds, rounded up (the router waits it, a translated answer sends it)."""
        return retry_after(error_status(body)) if status == 429 or status >= 500 else None

    def sign(self, request: httpx.Request, provider: ProviderConfig) -> None:
        """Drop the client's own credentials: its ``?key=`` query parameter (the router forwards the
        query string as sent) and, defensively, any ``x-goog-api-key`` that is not a configured key."""
        if "key" in request.url.params:
            request.url = request.url.copy_remove_param("key")
        sent = request.headers.get_list(_API_KEY)
        if sent:
            ours = {key.get_secret_value() for key in provider.api_keys}
            kept = [value for value in sent if value in ours]
            del request.headers[_API_KEY]
            if kept:
                request.headers[_API_KEY] = kept[-1]


ADAPTERS: dict[str, ProviderAdapter] = {"gemini": GeminiAdapter()}
