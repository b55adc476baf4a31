"""OpenAI Chat Completions <-> Cohere v2 chat (``POST /v2/chat``, plain and SSE).

Cohere's v2 messages are close to OpenAI's: system (and developer) / user / assistant / tool roles,
tool calls with JSON-string arguments and ids, images as ``image_url`` parts. Renamed: ``top_p`` ->
``p``, ``stop`` -> ``stop_sequences``, ``tool_choice`` ``required``/``none`` -> ``REQUIRED``/``NONE``
(a named tool has no equivalent), ``response_format`` -> ``{"type": "json_object", "json_schema"}``.
Response: text parts are the content; ``tool_plan`` and ``thinking`` parts become
``reasoning_content``; Cohere names no model, so the deployment's is reported.
https://docs.cohere.com/reference/chat
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers.openai.chat_shapes import (
    ABSENT,
    ChatMessage,
    ChatRequest,
    ChunkWriter,
    Delta,
    FunctionDelta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    PromptTokensDetails,
    ToolCallDelta,
    assistant_completion,
    encode,
    error_event,
    present,
)
from llm_obs_middleware.providers.translate_base import (
    DONE,
    OPENAI_ONLY,
    ChatDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedParams,
    UnsupportedRule,
    UpstreamRequest,
    openai_error,
    raw_error_message,
)

__all__ = ["CohereTranslator"]

_UNSUPPORTED = (
    "n",
    *OPENAI_ONLY,
)
_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "stop",
    "TIMEOUT": "length",
}
_TOOL_CHOICE = {"required": "REQUIRED", "none": "NONE"}
_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')


class _Part(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class _CallFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _Call(msgspec.Struct):
    id: str | None = None
    function: _CallFunction | None = None


class _Message(msgspec.Struct):
    content: list[_Part] = []
    tool_plan: str | None = None
    tool_calls: list[_Call] = []


class _Tokens(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class _Usage(msgspec.Struct):
    tokens: _Tokens | None = None
    billed_units: _Tokens | None = None
    cached_tokens: float | None = None


class _Response(msgspec.Struct):
    id: str = ""
    message: _Message | None = None
    finish_reason: str | None = None
    usage: _Usage | None = None


class _DeltaContent(msgspec.Struct):
    text: str | None = None
    thinking: str | None = None


class _DeltaMessage(msgspec.Struct):
    # message-start carries lists (empty content and tool calls); the deltas carry single objects.
    content: list[msgspec.Raw] | _DeltaContent | None = None
    tool_plan: str | None = None
    tool_calls: list[msgspec.Raw] | _Call | None = None


class _EventDelta(msgspec.Struct):
    message: _DeltaMessage | None = None
    finish_reason: str | None = None
    usage: _Usage | None = None
    error: str | None = None


class _Event(msgspec.Struct):
    type: str = ""
    id: str | None = None
    index: int = 0
    delta: _EventDelta | None = None


class _Error(msgspec.Struct):
    message: str | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_decode_error = msgspec.json.Decoder(_Error).decode


def _usage(usage: _Usage | None) -> OpenAIUsage | None:
    tokens = usage.tokens or usage.billed_units if usage is not None else None
    if usage is None or tokens is None:
        return None
    prompt, completion = int(tokens.input_tokens or 0), int(tokens.output_tokens or 0)
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=int(usage.cached_tokens or 0)),
    )


def _schema(parameters: msgspec.Raw) -> msgspec.Raw:
    return parameters if present(parameters) else _EMPTY_SCHEMA


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "COMPLETE", "stop")


def _content(message: ChatMessage, skipped: UnsupportedParams) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None and message.role == "user":
            parts.append({"type": "image_url", "image_url": {"url": part.image_url.url}})
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return parts


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for message in chat.messages:
        role = "system" if message.role == "developer" else message.role
        if role not in ("system", "user", "assistant", "tool"):
            raise TranslationError(f"message role {role!r} cannot be sent to cohere", param="messages")
        item: dict[str, Any] = {"role": role}
        content = _content(message, skipped)
        if content or not message.tool_calls:
            item["content"] = content
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments or "{}"},
                }
                for call in message.tool_calls
            ]
        if role == "tool":
            item["tool_call_id"] = message.tool_call_id or ""
        messages.append(item)
    return messages


class CohereTranslator(ChatDecoding):
    """OpenAI Chat Completions to Cohere v2 chat and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = UnsupportedParams("cohere")
        skipped.check(chat, _UNSUPPORTED)
        if chat.parallel_tool_calls is False:
            skipped.add("parallel_tool_calls")
        body: dict[str, Any] = {"model": model, "messages": _messages(chat, skipped)}
        if chat.stream:
            body["stream"] = True
        for ours, theirs in (
            ("temperature", "temperature"),
            ("top_p", "p"),
            ("seed", "seed"),
            ("presence_penalty", "presence_penalty"),
            ("frequency_penalty", "frequency_penalty"),
        ):
            value = getattr(chat, ours)
            if value is not None:
                body[theirs] = value
        if chat.output_limit is not None:
            body["max_tokens"] = chat.output_limit
        if chat.stop_list:
            body["stop_sequences"] = chat.stop_list
        if chat.logprobs:
            body["logprobs"] = True
        if chat.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.function.name,
                        **({"description": tool.function.description} if tool.function.description else {}),
                        "parameters": _schema(tool.function.parameters),
                    },
                }
                for tool in chat.tools
            ]
        choice = chat.tool_choice
        if isinstance(choice, str) and choice in _TOOL_CHOICE:
            body["tool_choice"] = _TOOL_CHOICE[choice]
        elif choice is not None and choice != "auto":
            skipped.add("tool_choice")
        format_ = chat.response_format
        if format_ is not None and format_.type in ("json_object", "json_schema"):
            schema = format_.json_schema.schema if format_.json_schema is not None else ABSENT
            body["response_format"] = {"type": "json_object", **({"json_schema": schema} if present(schema) else {})}
        elif format_ is not None and format_.type != "text":
            skipped.add("response_format")
        dropped = skipped.resolve(unsupported)
        return UpstreamRequest("/v2/chat", encode(body), [], dropped)

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        response = _decode_response(body)
        message = response.message or _Message()
        texts = [part.text for part in message.content if part.type == "text" and part.text]
        reasoning = [message.tool_plan] if message.tool_plan else []
        reasoning += [part.thinking for part in message.content if part.type == "thinking" and part.thinking]
        calls = []
        for index, call in enumerate(message.tool_calls):
            function = call.function or _CallFunction()
            output = OutputFunction(function.name or "", function.arguments or "{}")
            calls.append(OutputToolCall(id=call.id or f"{context.response_id}_call_{index}", function=output))
        completion = assistant_completion(
            id=response.id or context.response_id,
            created=context.created,
            model=context.model,
            texts=texts,
            reasoning=reasoning,
            calls=calls,
            finish_reason=_finish(response.finish_reason),
            usage=_usage(response.usage),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> CohereStream:
        return CohereStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        try:
            message = _decode_error(body).message
        except msgspec.DecodeError:
            message = None
        if not message:
            message = raw_error_message(body, "cohere", status)
        return openai_error(status, message, None, retry_after)


class CohereStream:
    """Cohere's named SSE events to OpenAI chunks, event by event."""

    __slots__ = ("_completed", "_include_usage", "_out", "_parser", "_usage")

    def __init__(self, context: ResponseContext) -> None:
        self._parser = SSEParser()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._usage: _Usage | None = None
        self._completed = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(data) for _name, data in self._parser.feed(chunk)])

    def _event(self, data: bytes) -> bytes:
        if data == b"[DONE]":
            return b""
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            return b""
        out = self._out
        delta = event.delta
        message = delta.message if delta is not None else None
        kind = event.type
        if kind == "content-delta" and message is not None and isinstance(message.content, _DeltaContent):
            if message.content.text:
                return out.delta(Delta(content=message.content.text))
            if message.content.thinking:
                return out.delta(Delta(reasoning_content=message.content.thinking))
        elif kind == "tool-plan-delta" and message is not None and message.tool_plan:
            return out.delta(Delta(reasoning_content=message.tool_plan))
        elif kind in ("tool-call-start", "tool-call-delta") and message is not None:
            call = message.tool_calls
            if isinstance(call, _Call) and call.function is not None:
                function = FunctionDelta(
                    name=call.function.name if kind == "tool-call-start" else None, arguments=call.function.arguments
                )
                tool = ToolCallDelta(
                    index=event.index,
                    id=call.id if kind == "tool-call-start" else None,
                    type="function" if kind == "tool-call-start" else None,
                    function=function,
                )
                return out.delta(Delta(tool_calls=[tool]))
        elif kind == "message-start":
            out.id = event.id or out.id
            return out.delta(Delta(role="assistant", content=""))
        elif kind == "message-end" and delta is not None:
            self._completed = True
            self._usage = delta.usage
            if delta.error:
                return error_event(delta.error, "server_error", None)
            return out.delta(Delta(), _finish(delta.finish_reason))
        return b""

    def close(self) -> bytes:
        tail = b"".join([self._event(data) for _name, data in self._parser.close()])
        if not self._completed:
            return tail
        usage = _usage(self._usage) if self._include_usage else None
        return tail + (self._out.usage(usage) if usage is not None else b"") + DONE
