"""The fake provider's Gemini mode: Generative Language API paths, shaped like the real API.

``POST /{v1,v1beta,v1alpha}/models/{model}:generateContent`` (text, or a ``functionCall`` when the
request declares functions and ``toolConfig`` does not say ``NONE``), ``:streamGenerateContent``
(``?alt=sse``: data-only SSE with CRLF line ends and cumulative ``usageMetadata`` in every chunk;
without it, one JSON array), ``:embedContent``, ``:batchEmbedContents`` and ``:countTokens``.
A key is required (``x-goog-api-key`` or ``?key=``, else 403 ``PERMISSION_DENIED``). Usage follows
:class:`FakeProviderConfig`: ``candidatesTokenCount`` excludes the thinking tokens, which are
reported as ``thoughtsTokenCount``; proto3 JSON omits zero counts. The ``x-fake-*`` overrides apply:
errors are ``google.rpc.Status`` bodies (429: ``RESOURCE_EXHAUSTED`` with ``RetryInfo``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from llm_obs_middleware.providers.gemini.adapter import PATH
from llm_obs_middleware.providers.gemini.wire import RETRY_INFO, ErrorDetail, ErrorEnvelope, Status
from llm_obs_middleware.testing import _payloads as p
from llm_obs_middleware.testing._requests import HTTPError, NativeCall, below_root, check_failure
from llm_obs_middleware.testing._responses import send_json, send_stream

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Scope, Send
    from llm_obs_middleware.testing._requests import Overrides
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = ["handle"]

_METHODS = frozenset({"generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "countTokens"})
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_JSON = (b"content-type", b"application/json; charset=UTF-8")
_SSE = (b"content-type", b"text/event-stream")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def handle(call: NativeCall, send: Send) -> bool:
    """Answer Gemini paths; ``False`` for every other path."""
    fake, scope, headers, body, overrides, request_id = call
    found = PATH.match(below_root(scope))
    if found is None:
        return False
    try:
        await _answer(fake, scope, headers, body, overrides, found, request_id, send)
    except HTTPError as exc:
        await _send_error(send, exc.status, str(exc))
    return True


async def _answer(
    fake: FakeProvider,
    scope: Scope,
    headers: dict[str, str],
    body: bytes,
    o: Overrides,
    found: re.Match[str],
    rid: bytes,
    send: Send,
) -> None:
    _, model, method = found.groups()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if method not in _METHODS:
        raise HTTPError(404, f"Method {method!r} not found for models/{model}.")
    if scope["method"] != "POST":
        raise HTTPError(405, f"Method {scope['method']} not allowed.")
    if not headers.get("x-goog-api-key") and not query.get("key"):
        raise HTTPError(403, "Method doesn't allow unregistered callers. Please use API Key.")
    check_failure(o, model)
    try:
        request = _decode(body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"Invalid JSON payload received. {exc}") from None
    config = fake.config
    if method == "countTokens":
        await _send_json(send, {"totalTokens": config.prompt_tokens})
    elif method in ("embedContent", "batchEmbedContents"):
        await _send_json(send, _embeddings(request, method, config.embedding_dimensions))
    else:
        completion = o.chunks if config.completion_tokens is None else config.completion_tokens
        tokens = p.Tokens(config.prompt_tokens, completion, config.cached_tokens, config.reasoning_tokens)
        tool = _tool(request)
        chunks = _chunks(tokens, o.chunks, tool, model, rid)
        if method == "generateContent":
            await _send_json(send, _merge(chunks))
        elif query.get("alt") == ["sse"]:
            events = [b"data: " + _encode(chunk) + b"\r\n\r\n" for chunk in chunks]
            await send_stream(send, [_SSE], events, o)
        else:
            await _send_json(send, chunks)


def _usage(tokens: p.Tokens, candidates: int) -> dict[str, int]:
    usage = {
        "promptTokenCount": tokens.prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": tokens.prompt + candidates + tokens.reasoning,
        "cachedContentTokenCount": tokens.cached,
        "thoughtsTokenCount": tokens.reasoning,
    }
    return {key: value for key, value in usage.items() if value}  # proto3 JSON omits zeros


_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "LOW"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def _chunks(tokens: p.Tokens, count: int, tool: tuple[str, str] | None, model: str, rid: bytes) -> list[dict[str, Any]]:
    """The stream's chunks; a plain answer is them merged. Usage is cumulative in every chunk."""
    candidates = max(tokens.completion - tokens.reasoning, 0)
    pieces = p.text_pieces(count) if tool is None else []
    parts: list[list[dict[str, Any]]] = [[{"text": piece}] for piece in pieces]
    if tool is not None:
        parts.append([{"functionCall": {"name": tool[0], "args": msgspec.json.decode(tool[1])}}])
    total = len(parts)
    chunks = []
    for index, content in enumerate(parts, start=1):
        candidate: dict[str, Any] = {"content": {"parts": content, "role": "model"}, "index": 0}
        if index == total:
            candidate["finishReason"] = "STOP"
            candidate["safetyRatings"] = _SAFETY_RATINGS  # Gemini rates the candidate as it finishes
        usage = _usage(tokens, candidates * index // total)
        chunks.append(
            {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": rid.decode()[-22:],
            }
        )
    return chunks


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for chunk in chunks:
        for part in chunk["candidates"][0]["content"]["parts"]:
            if "text" in part and parts and "text" in parts[-1]:
                parts[-1] = {"text": parts[-1]["text"] + part["text"]}
            else:
                parts.append(part)
    last = chunks[-1]
    candidate = dict(last["candidates"][0], content={"parts": parts, "role": "model"})
    return dict(last, candidates=[candidate])


def _tool(request: dict[str, Any]) -> tuple[str, str] | None:
    """The function the fake calls: the first one declared, unless function calling mode is NONE."""
    tool_config = request.get("toolConfig") or request.get("tool_config") or {}
    calling = tool_config.get("functionCallingConfig") or tool_config.get("function_calling_config") or {}
    if str(calling.get("mode", "")).upper() == "NONE":
        return None
    for tool in request.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or tool.get("function_declarations") or ():
            schema = declaration.get("parameters") or declaration.get("parametersJsonSchema") or {}
            return str(declaration.get("name", "tool")), p.fake_arguments(_lower_types(schema))
    return None


def _lower_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Gemini's OpenAPI-subset schemas spell types in capitals (``STRING``); JSON Schema does not."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    lowered = {
        name: dict(spec, type=spec["type"].lower()) if isinstance(spec.get("type"), str) else spec
        for name, spec in properties.items()
        if isinstance(spec, dict)
    }
    return dict(schema, properties=lowered)


def _embeddings(request: dict[str, Any], method: str, default: int) -> dict[str, Any]:
    def vector(item: dict[str, Any]) -> dict[str, list[float]]:
        size = item.get("outputDimensionality") or item.get("output_dimensionality") or default
        return {"values": p.vector(int(size))}

    if method == "embedContent":
        return {"embedding": vector(request)}
    requests = request.get("requests")
    if not isinstance(requests, list) or not requests:
        raise HTTPError(400, "* BatchEmbedContentsRequest.requests: contents is not specified")
    return {"embeddings": [vector(item) for item in requests]}


async def _send_json(send: Send, payload: Any, status: int = 200) -> None:
    await send_json(send, status, _encode(payload), _JSON)


async def _send_error(send: Send, status: int, message: str) -> None:
    details = [ErrorDetail(type=RETRY_INFO, retryDelay="1s")] if status == 429 else []
    error = Status(code=status, message=message, status=_STATUSES.get(status, "UNKNOWN"), details=details)
    await _send_json(send, ErrorEnvelope(error=error), status)
