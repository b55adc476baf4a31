"""The fake provider's Bedrock Runtime mode: Converse (JSON), ConverseStream (AWS event-stream) and
InvokeModel of embedding models.

``POST /model/{modelId}/converse`` and ``POST /model/{modelId}/converse-stream``, shaped like the
real API (the ``bedrock_converse`` fixtures) so boto3 parses them: text, a tool call when the request
offers tools, a reasoning block when ``reasoning_tokens`` is configured, usage from
:class:`FakeProviderConfig` (``inputTokens`` excludes the cached tokens, as Bedrock reports it).

Like AWS, it checks the SigV4 signature (service ``bedrock``): the access key must be one of
:data:`TEST_CREDENTIALS` and the signature must match what botocore computes with its secret, else
403 (``UnrecognizedClientException`` / ``InvalidSignatureException``). A bearer token (a Bedrock API
key) is accepted as is. So a gateway that forwarded its client's signature instead of signing
again would be refused.

``POST /model/{modelId}/invoke`` answers embedding models only: ``amazon.titan-embed-*`` takes one
``inputText`` (``dimensions`` long, else ``embedding_dimensions``) and answers ``{"embedding",
"inputTextTokenCount"}``; ``cohere.embed-*`` takes ``texts`` and a required ``input_type`` and answers
``{"embeddings": [[...]], ...}``. Both send ``prompt_tokens`` in ``x-amzn-bedrock-input-token-count``,
as Bedrock does for InvokeModel. Other models answer 400 (the fake has no InvokeModel chat).

Overrides: the common ``x-fake-*`` headers (``status`` answers with the Bedrock error for that
status, ``drop-after`` cuts a stream after that many frames), plus ``x-fake-bedrock-fault``:
``bad-crc`` / ``bad-prelude`` (second frame's message / prelude CRC corrupted), ``truncated-json``
(stream: the second frame's payload cut, CRCs valid; plain: body cut in half), ``unknown-event`` (an extra
event of an unknown type after ``messageStart``) and ``exception`` (a ``throttlingException`` frame
after the first delta ends the stream); ``x-fake-bedrock-error-type`` names the error instead (the
``x-amzn-errortype`` of a status answer, or the ``:exception-type``), ``x-fake-bedrock-retry-after``
adds that ``retry-after`` to a status answer, ``x-fake-bedrock-stop-reason`` sets the ``stopReason``.
A model named ``fail-NNN...`` answers with status NNN.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.codecs.eventstream import encode_message
from llm_obs_middleware.providers.bedrock.adapter import PATH
from llm_obs_middleware.providers.bedrock.errors import STATUS_ERRORS
from llm_obs_middleware.providers.bedrock.wire import (
    ContentBlock,
    ContentBlockDelta,
    ContentBlockStart,
    ConverseRequest,
    ConverseResponse,
    ErrorBody,
    InvokeEmbedRequest,
    InvokeEmbedResponse,
    Message,
    Metrics,
    Output,
    ReasoningContent,
    ReasoningDelta,
    ReasoningText,
    StreamEvent,
    TokenUsage,
    ToolUse,
    ToolUseDelta,
)
from llm_obs_middleware.testing import _payloads as p
from llm_obs_middleware.testing._requests import NativeCall, Overrides, below_root, fail_status
from llm_obs_middleware.testing._responses import send_json, send_stream, uuid_id
from llm_obs_middleware.testing._sigv4_check import check_signature

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Send
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = [
    "ROTATED_ACCESS_KEY_ID",
    "ROTATED_SECRET_ACCESS_KEY",
    "TEST_ACCESS_KEY_ID",
    "TEST_CREDENTIALS",
    "TEST_SECRET_ACCESS_KEY",
    "handle",
]

TEST_ACCESS_KEY_ID = "AKIAFAKEBEDROCK00001"
TEST_SECRET_ACCESS_KEY = "fake/bedrock+Secret/Key0001"
ROTATED_ACCESS_KEY_ID = "ASIAFAKEBEDROCK00002"
ROTATED_SECRET_ACCESS_KEY = "fake/bedrock+Rotated/Key0002"
"""A second key pair (the one refreshed credentials rotate to, in tests)."""
TEST_CREDENTIALS = MappingProxyType(
    {TEST_ACCESS_KEY_ID: TEST_SECRET_ACCESS_KEY, ROTATED_ACCESS_KEY_ID: ROTATED_SECRET_ACCESS_KEY}
)
"""Access key id -> secret key the fake accepts SigV4 signatures from."""

_JSON = (b"content-type", b"application/json")
_encode = msgspec.json.Encoder().encode


_decode_request = msgspec.json.Decoder(ConverseRequest).decode
_decode_schema = msgspec.json.Decoder(dict[str, Any]).decode


def _offered_tool(request: ConverseRequest) -> tuple[str, dict[str, Any] | None] | None:
    """The first tool the request offers: its name and JSON schema."""
    for tool in request.tool_config.tools if request.tool_config else ():
        if tool.tool_spec is not None:
            schema = (tool.tool_spec.input_schema or {}).get("json")
            return tool.tool_spec.name or "tool", _decode_schema(schema) if schema else None
    return None


async def handle(call: NativeCall, send: Send) -> bool:
    """Answer Bedrock Runtime paths; ``False`` for every other path."""
    fake, scope, headers, body, overrides, request_id = call
    found = PATH.match(below_root(scope))
    if found is None:
        return False
    rid = uuid_id(request_id)
    model, operation = found.group(1), found.group(2)
    if scope["method"] != "POST":
        await _error(send, 405, "ValidationException", f"Method {scope['method']} is not allowed", rid)
        return True
    refused = check_signature(scope, headers, body, TEST_CREDENTIALS)
    if refused is not None:
        await _error(send, 403, refused[0], refused[1], rid)
        return True
    status = overrides.status if overrides.status is not None else fail_status(model)
    if status is not None and status >= 400:
        kind = STATUS_ERRORS.get(status) or ("InternalServerException" if status >= 500 else "ValidationException")
        kind = headers.get("x-fake-bedrock-error-type", kind)
        message = "Too many requests, please wait before trying again." if status == 429 else "Fake failure"
        await _error(send, status, kind, message, rid, headers.get("x-fake-bedrock-retry-after"))
        return True
    if operation == "invoke":
        await _invoke_embeddings(fake, model, body, rid, send)
        return True
    try:
        request = _decode_request(body)
    except msgspec.DecodeError as exc:
        await _error(send, 400, "ValidationException", f"Malformed input request: {exc}", rid)
        return True
    answer = _Answer(fake, overrides, request, rid)
    answer.stop_reason = headers.get("x-fake-bedrock-stop-reason", answer.stop_reason)
    fault = headers.get("x-fake-bedrock-fault", "")
    if operation == "converse":
        payload = _encode(answer.body())
        if fault == "truncated-json":
            payload = payload[: len(payload) // 2]
        await send_json(send, 200, payload, _JSON, _rid(rid))
    else:
        await _stream(answer, overrides, (fault, headers.get("x-fake-bedrock-error-type")), rid, send)
    return True


class _Answer:
    """The assistant turn the fake gives: optional reasoning, text in ``chunks`` pieces, optional tool call."""

    def __init__(self, fake: FakeProvider, overrides: Overrides, request: ConverseRequest, rid: str) -> None:
        config = fake.config
        self.pieces = p.text_pieces(overrides.chunks)
        completion = overrides.chunks if config.completion_tokens is None else config.completion_tokens
        cached = min(config.cached_tokens, config.prompt_tokens)
        self.usage = TokenUsage(
            input_tokens=config.prompt_tokens - cached,
            output_tokens=completion,
            total_tokens=config.prompt_tokens + completion,
            cache_read_input_tokens=cached,
            cache_write_input_tokens=0,
        )
        self.reasoning = "Let me think about that." if config.reasoning_tokens else None
        offered = _offered_tool(request)
        self.tool: tuple[str, str, str] | None = None
        if offered is not None:
            self.tool = ("tooluse_" + rid.replace("-", "")[-22:], offered[0], p.fake_arguments(offered[1]))
        self.stop_reason = "tool_use" if self.tool else "end_turn"
        latency = overrides.latency_s + overrides.ttft_s + overrides.interval_s * max(0, overrides.chunks - 1)
        self.metrics = Metrics(latency_ms=round(latency * 1000))

    def body(self) -> ConverseResponse:
        content: list[ContentBlock] = []
        if self.reasoning:
            reasoning = ReasoningText(text=self.reasoning, signature="fake-sig")
            content.append(ContentBlock(reasoning_content=ReasoningContent(reasoning_text=reasoning)))
        content.append(ContentBlock(text="".join(self.pieces)))
        if self.tool is not None:
            tool_id, name, arguments = self.tool
            use = ToolUse(tool_use_id=tool_id, name=name, input=msgspec.Raw(arguments.encode()))
            content.append(ContentBlock(tool_use=use))
        return ConverseResponse(
            output=Output(message=Message(role="assistant", content=content)),
            stop_reason=self.stop_reason,
            usage=self.usage,
            metrics=self.metrics,
        )

    def frames(self) -> tuple[list[tuple[str, StreamEvent]], int, int]:
        """``(event type, payload)`` frames, the index of the first token frame and of the last one + 1."""
        frames: list[tuple[str, StreamEvent]] = [("messageStart", StreamEvent(role="assistant"))]
        index = 0
        if self.reasoning:
            frames.append(_delta(index, ContentBlockDelta(reasoning_content=ReasoningDelta(text=self.reasoning))))
            frames.append(_delta(index, ContentBlockDelta(reasoning_content=ReasoningDelta(signature="fake-sig"))))
            frames.append(("contentBlockStop", StreamEvent(content_block_index=index)))
            index += 1
        first = 1
        frames.extend(_delta(index, ContentBlockDelta(text=piece)) for piece in self.pieces)
        frames.append(("contentBlockStop", StreamEvent(content_block_index=index)))
        if self.tool is not None:
            tool_id, name, arguments = self.tool
            index += 1
            start = ContentBlockStart(tool_use=ToolUse(tool_use_id=tool_id, name=name))
            frames.append(("contentBlockStart", StreamEvent(content_block_index=index, start=start)))
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                frames.append(_delta(index, ContentBlockDelta(tool_use=ToolUseDelta(input=piece))))
            frames.append(("contentBlockStop", StreamEvent(content_block_index=index)))
        end = len(frames)
        frames.append(("messageStop", StreamEvent(stop_reason=self.stop_reason)))
        frames.append(("metadata", StreamEvent(usage=self.usage, metrics=self.metrics)))
        return frames, first, end


def _delta(index: int, delta: ContentBlockDelta) -> tuple[str, StreamEvent]:
    return "contentBlockDelta", StreamEvent(content_block_index=index, delta=delta)


async def _stream(answer: _Answer, o: Overrides, faults: tuple[str, str | None], rid: str, send: Send) -> None:
    fault, exception_type = faults
    events, first, end = answer.frames()
    frames = [frame(event_headers(name), _encode(payload)) for name, payload in events]
    if fault == "unknown-event":
        frames.insert(1, frame(event_headers("fakeFutureEvent"), b'{"hello":"from the future"}'))
        first, end = first + 1, end + 1
    elif fault == "exception":
        exception = {":exception-type": exception_type or "throttlingException", ":content-type": "application/json"}
        message = _encode(ErrorBody(message="Too many tokens, please wait before trying again."))
        frames[first + 1 :] = [frame({**exception, ":message-type": "exception"}, message)]
    elif fault == "truncated-json":
        frames[1] = frame(event_headers(events[1][0]), _encode(events[1][1])[:-5])
    elif fault in ("bad-crc", "bad-prelude"):
        corrupt = bytearray(frames[1])
        corrupt[-1 if fault == "bad-crc" else 11] ^= 0xFF
        frames[1] = bytes(corrupt)
    head = [(b"content-type", b"application/vnd.amazon.eventstream"), _rid(rid)]
    await send_stream(send, head, frames, o, first=first, count=end - first, unit="frames")


def event_headers(event_type: str) -> dict[str, str]:
    return {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers (value type 7) and valid CRCs."""
    return encode_message(headers, payload)


_decode_embed = msgspec.json.Decoder(InvokeEmbedRequest).decode


async def _invoke_embeddings(fake: FakeProvider, model: str, body: bytes, rid: str, send: Send) -> None:
    try:
        request = _decode_embed(body)
    except msgspec.DecodeError as exc:
        await _error(send, 400, "ValidationException", f"Malformed input request: {exc}", rid)
        return
    config = fake.config
    problem: str | None = None
    payload: InvokeEmbedResponse | dict[str, Any] = {}
    if "titan-embed" in model:
        if request.input_text is None:
            problem = "Malformed input request: #: required key [inputText] not found, please reformat your input"
        else:
            size = request.dimensions or config.embedding_dimensions
            payload = InvokeEmbedResponse(embedding=_vector(0, size), input_text_token_count=config.prompt_tokens)
    elif "cohere.embed" in model:
        if not request.texts or not request.input_type:
            problem = "Malformed input request: #: required keys [texts, input_type] not found or empty"
        else:
            vectors = [_vector(index, config.embedding_dimensions) for index in range(len(request.texts))]
            payload = {"id": rid, "embeddings": vectors, "response_type": "embeddings_floats", "texts": request.texts}
    else:
        problem = f"The fake answers InvokeModel for embedding models only, not {model}"
    if problem is not None:
        await _error(send, 400, "ValidationException", problem, rid)
        return
    tokens = (b"x-amzn-bedrock-input-token-count", b"%d" % config.prompt_tokens)
    await send_json(send, 200, _encode(payload), _JSON, tokens, _rid(rid))


def _vector(index: int, size: int) -> list[float]:
    # Deterministic and distinct per input, so tests can tell the vectors apart.
    return [round(math.sin(index * 3 + j + 1) / 2, 3) for j in range(size)]


def _rid(rid: str) -> tuple[bytes, bytes]:
    return (b"x-amzn-requestid", rid.encode())


async def _error(send: Send, status: int, kind: str, message: str, rid: str, retry_after: str | None = None) -> None:
    headers = [
        _rid(rid),
        (b"x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/".encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode("latin-1")))
    await send_json(send, status, _encode(ErrorBody(message=message)), _JSON, *headers)
