"""The fake provider's Anthropic mode: the Messages API, shaped like the real one (and its fixtures).

``POST /v1/messages`` answers a ``message`` (text, or a ``tool_use`` block when the request offers
tools and ``tool_choice`` is not ``none``), or with ``"stream": true`` the named-event SSE stream
(``message_start``, content blocks with ``text_delta``/``input_json_delta``, a ``ping``,
``message_delta`` with the cumulative usage, ``message_stop``). ``POST /v1/messages/count_tokens``
answers ``{"input_tokens": prompt_tokens}``. A key is required (``x-api-key``, or a bearer token).

Usage follows :class:`FakeProviderConfig` with Anthropic's semantics: ``input_tokens`` excludes the
``cached_tokens`` (reported as ``cache_read_input_tokens``), so the normalized input is
``prompt_tokens``; ``reasoning_tokens`` > 0 adds a thinking block and ``output_tokens_details``.
The ``x-fake-*`` overrides apply (timing, chunks, ``drop-after``); errors are Anthropic error
bodies (``x-fake-status: 529`` is ``overloaded_error``; 429 adds ``retry-after``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.providers.anthropic.adapter import error_body
from llm_obs_middleware.providers.anthropic.wire import ERROR_TYPES, MessagesRequest, ToolDefinition
from llm_obs_middleware.testing._payloads import fake_arguments, split_text, text_pieces
from llm_obs_middleware.testing._requests import HTTPError, NativeCall, below_root, check_failure
from llm_obs_middleware.testing._responses import decode_raw_list, named_event, send_json, send_stream

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Send
    from llm_obs_middleware.testing._requests import Overrides
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = ["handle"]

_MESSAGES, _COUNT = "/v1/messages", "/v1/messages/count_tokens"
_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_SIGNATURE = "EqQBCkgIBxABGAIiQFakeSignatureForTheFakeProvider0123456789"
_encode = msgspec.json.Encoder().encode


_decode = msgspec.json.Decoder(MessagesRequest).decode
_decode_tools = msgspec.json.Decoder(list[ToolDefinition]).decode


async def handle(call: NativeCall, send: Send) -> bool:
    """Answer the Messages API paths; ``False`` for every other path."""
    fake, scope, headers, body, overrides, request_id = call
    path = below_root(scope)
    if path not in (_MESSAGES, _COUNT):
        return False
    rid = b"req_fake" + request_id
    try:
        await _answer(fake, scope["method"], path, headers, body, overrides, rid, send)
    except HTTPError as exc:
        await _send_error(send, exc.status, str(exc), rid)
    return True


async def _answer(
    fake: FakeProvider,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    o: Overrides,
    rid: bytes,
    send: Send,
) -> None:
    request, model = _admit(method, path, headers, body, o)
    config = fake.config
    if path == _COUNT:
        await send_json(send, 200, _encode({"input_tokens": config.prompt_tokens}), _JSON, (b"request-id", rid))
        return
    if request.max_tokens is None:
        raise HTTPError(400, "max_tokens: Field required")
    completion = o.chunks if config.completion_tokens is None else config.completion_tokens
    usage: dict[str, Any] = {
        "input_tokens": config.prompt_tokens - config.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": config.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": completion,
    }
    if config.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": config.reasoning_tokens}
    tool = _tool(request)
    message_id = "msg_fake" + rid[len(b"req_fake") :].decode()
    if request.stream:
        events, first, count = _events(message_id, model, tool, usage, o.chunks, bool(config.reasoning_tokens))
        await send_stream(send, [*_SSE, (b"request-id", rid)], events, o, first=first, count=count)
        return
    content: list[dict[str, Any]] = []
    if config.reasoning_tokens:
        content.append({"type": "thinking", "thinking": "Thinking it over.", "signature": _SIGNATURE})
    if tool is None:
        content.append({"type": "text", "text": "".join(text_pieces(o.chunks))})
    else:
        content.append(_tool_block(message_id, tool[0], msgspec.json.decode(tool[1])))
    message = _message(message_id, model, content, "end_turn" if tool is None else "tool_use", usage)
    await send_json(send, 200, _encode(message), _JSON, (b"request-id", rid))


def _admit(method: str, path: str, headers: dict[str, str], body: bytes, o: Overrides) -> tuple[MessagesRequest, str]:
    """The request and its model, after the API's checks (method, key, body, model) and a requested failure."""
    if method != "POST":
        raise HTTPError(405, f"Method {method} not allowed for {path}")
    if "x-api-key" not in headers and not headers.get("authorization", "").startswith("Bearer "):
        raise HTTPError(401, "x-api-key header is required")
    check_failure(o, None)
    try:
        request = _decode(body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"invalid request body: {exc}") from None
    if not request.model:
        raise HTTPError(400, "model: Field required")
    check_failure(None, request.model)
    return request, request.model


def _tool(request: MessagesRequest) -> tuple[str, str] | None:
    """The tool the fake calls: the one named by ``tool_choice``, else the first offered (none if ``none``)."""
    choice = request.tool_choice
    if not request.tools or (choice is not None and choice.type == "none"):
        return None
    tools: list[ToolDefinition] = decode_raw_list(_decode_tools, request.tools)
    tool = tools[0]
    if choice is not None and choice.type == "tool":
        tool = next((t for t in tools if t.name == choice.name), tool)
    return tool.name, fake_arguments(tool.input_schema)


def _tool_block(message_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_" + message_id.removeprefix("msg_"), "name": name, "input": arguments}


def _message(
    message_id: str, model: str, content: list[dict[str, Any]], stop: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {**usage, "service_tier": "standard"},
    }


def _events(
    message_id: str, model: str, tool: tuple[str, str] | None, usage: dict[str, Any], chunks: int, thinking: bool
) -> tuple[list[bytes], int, int]:
    """The stream's events, how many go out with the headers, and how many carry the tokens after them."""
    start_usage = {**usage, "output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    events = [named_event({"type": "message_start", "message": _message(message_id, model, [], None, start_usage)})]
    index = 0
    if thinking:  # goes out whole with the headers: the timed deltas are the answer's
        events.append(named_event(_block_start(index, {"type": "thinking", "thinking": "", "signature": ""})))
        events.append(named_event(_delta(index, {"type": "thinking_delta", "thinking": "Thinking it over."})))
        events.append(named_event(_delta(index, {"type": "signature_delta", "signature": _SIGNATURE})))
        events.append(named_event({"type": "content_block_stop", "index": index}))
        index += 1
    if tool is None:
        events.append(named_event(_block_start(index, {"type": "text", "text": ""})))
        events.append(named_event({"type": "ping"}))
        pieces = [_delta(index, {"type": "text_delta", "text": piece}) for piece in text_pieces(chunks)]
    else:
        name, arguments = tool
        events.append(named_event(_block_start(index, _tool_block(message_id, name, {}))))
        events.append(named_event(_delta(index, {"type": "input_json_delta", "partial_json": ""})))
        pieces = [
            _delta(index, {"type": "input_json_delta", "partial_json": part}) for part in split_text(arguments, chunks)
        ]
    preamble = len(events)
    events.extend(named_event(piece) for piece in pieces)
    events.append(named_event({"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": "end_turn" if tool is None else "tool_use", "stop_sequence": None}
    final = {key: value for key, value in usage.items() if key != "cache_creation"}
    events.append(named_event({"type": "message_delta", "delta": stop, "usage": final}))
    events.append(named_event({"type": "message_stop"}))
    return events, preamble, len(pieces)


def _block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


async def _send_error(send: Send, status: int, message: str, rid: bytes) -> None:
    kind = ERROR_TYPES.get(status, ERROR_TYPES[500] if status >= 500 else ERROR_TYPES[400])
    body = error_body(kind, message, rid.decode())
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if status == 429:
        extra = ((b"retry-after", b"1"),)
    elif status >= 500:
        extra = ((b"x-should-retry", b"true"),)
    await send_json(send, status, body, _JSON, (b"request-id", rid), *extra)
