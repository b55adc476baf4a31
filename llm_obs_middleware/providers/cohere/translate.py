"""OpenAI Chat Completions <-> Cohere v2 chat (``POST /v2/chat``, plain and SSE).

Cohere's v2 messages are close to OpenAI's: system (and developer) / user / assistant / tool roles,
tool calls with JSON-string arguments and ids, images as ``image_url`` parts. Renamed: ``top_p`` ->
``p``, ``stop`` -> ``stop_sequences``, ``tool_choice`` ``required``/``none`` -> ``REQUIRED``/``NONE``
(a named tool has no equivalent), ``response_format`` -> ``{"type": "json_object", "json_schema"}``.
Response: text parts are the content; ``tool_plan`` and ``thinking`` parts become
``reasoning_content``; Cohere names no model, so the deployment's is reported. Answers are read with
the wire Structs and the observer's readers, so the client's ``finish_reason`` is
``openai_finish_reason`` of the record's, and a failed generation (``ERROR``, ``TIMEOUT``, an error
text) ends a stream with OpenAI's error event.
https://docs.cohere.com/reference/chat
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from llm_obs_middleware.providers._translate_common import (
    copy_params,
    function_tools,
    plain_role,
    response_schema,
    unsupported_params,
    user_parts,
)
from llm_obs_middleware.providers.cohere.observe import ChatStreamObserver, cohere_usage
from llm_obs_middleware.providers.cohere.wire import (
    ChatResponse,
    CohereUsage,
    ContentDelta,
    ErrorBody,
    MessageEnd,
    MessageStart,
    StreamEvent,
    ToolCallDelta,
    ToolCallStart,
    ToolPlanDelta,
    failed,
    finish_reason,
)
from llm_obs_middleware.providers.openai.chat_shapes import (
    ChatMessage,
    ChatRequest,
    ChunkWriter,
    Delta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    PromptTokensDetails,
    assistant_completion,
    encode,
    error_event,
)
from llm_obs_middleware.providers.translate_base import (
    OPENAI_ONLY,
    ChatDecoding,
    EventTranslator,
    ResponseContext,
    TranslatedError,
    UnsupportedParams,
    UnsupportedRule,
    UpstreamRequest,
    openai_error,
    openai_finish_reason,
    raw_error_message,
)

__all__ = ["CohereTranslator"]

_UNSUPPORTED = (
    "n",
    *OPENAI_ONLY,
)
_TOOL_CHOICE = {"required": "REQUIRED", "none": "NONE"}
_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)


_decode_response = msgspec.json.Decoder(ChatResponse).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode


def _usage(usage: CohereUsage | None) -> OpenAIUsage | None:
    """The record's usage (:func:`cohere_usage`) in OpenAI's shape; the billed units when no raw count came."""
    normalized = cohere_usage(usage)
    if usage is None or normalized is None:
        return None
    if usage.tokens is not None:
        prompt, completion = normalized.input_tokens or 0, normalized.output_tokens or 0
    elif usage.billed_units is not None:
        prompt, completion = normalized.billed_input_tokens or 0, normalized.billed_output_tokens or 0
    else:
        return None
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=normalized.cache_read_tokens or 0),
    )


def _content(message: ChatMessage, skipped: UnsupportedParams) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for kind, value in user_parts(content, skipped):
        if kind == "text":
            parts.append({"type": "text", "text": value})
        elif message.role == "user":
            parts.append({"type": "image_url", "image_url": {"url": value}})
        else:
            skipped.add("messages[].content[].image_url")
    return parts


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for message in chat.messages:
        role = plain_role(message, "cohere")
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


def _tool_choice(chat: ChatRequest, body: dict[str, Any], skipped: UnsupportedParams) -> None:
    choice = chat.tool_choice
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        body["tool_choice"] = _TOOL_CHOICE[choice]
    elif choice is not None and choice != "auto":
        skipped.add("tool_choice")  # a named tool has no equivalent


def _response_format(chat: ChatRequest, body: dict[str, Any], skipped: UnsupportedParams) -> None:
    format_ = chat.response_format
    if format_ is not None and format_.type in ("json_object", "json_schema"):
        schema = response_schema(chat)
        body["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema is not None else {})}
    elif format_ is not None and format_.type != "text":
        skipped.add("response_format")


class CohereTranslator(ChatDecoding):
    """OpenAI Chat Completions to Cohere v2 chat and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = unsupported_params("cohere", chat, _UNSUPPORTED)
        body: dict[str, Any] = {"model": model, "messages": _messages(chat, skipped)}
        if chat.stream:
            body["stream"] = True
        copy_params(chat, _SAMPLING, body)
        if chat.output_limit is not None:
            body["max_tokens"] = chat.output_limit
        if chat.stop_list:
            body["stop_sequences"] = chat.stop_list
        if chat.logprobs:
            body["logprobs"] = True
        if chat.tools:
            body["tools"] = function_tools(chat)
        _tool_choice(chat, body, skipped)
        _response_format(chat, body, skipped)
        dropped = skipped.resolve(unsupported)
        return UpstreamRequest("/v2/chat", encode(body), [], dropped)

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        response = _decode_response(body)
        message = response.message
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[OutputToolCall] = []
        if message is not None:
            texts = [part.text for part in message.content if part.type == "text" and part.text]
            reasoning = [message.tool_plan] if message.tool_plan else []
            reasoning += [part.thinking for part in message.content if part.type == "thinking" and part.thinking]
            for index, call in enumerate(message.tool_calls):
                name, arguments = (call.function.name, call.function.arguments) if call.function else (None, None)
                output = OutputFunction(name or "", arguments or "{}")
                calls.append(OutputToolCall(id=call.id or f"{context.response_id}_call_{index}", function=output))
        completion = assistant_completion(
            id=response.id or context.response_id,
            created=context.created,
            model=context.model,
            texts=texts,
            reasoning=reasoning,
            calls=calls,
            finish_reason=openai_finish_reason(finish_reason(response.finish_reason, bool(calls))),
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


class CohereStream(EventTranslator[StreamEvent]):
    """Cohere's v2 chat stream events (decoded by :class:`ChatStreamObserver`) to OpenAI chunks."""

    __slots__ = ("_completed", "_include_usage", "_out", "_tools", "_usage")
    source = ChatStreamObserver

    def __init__(self, context: ResponseContext) -> None:
        super().__init__()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._usage: CohereUsage | None = None
        self._tools = False
        self._completed = False

    def event(self, event: StreamEvent) -> bytes:
        out = self._out
        if isinstance(event, ContentDelta):
            content = event.delta.message.content if event.delta is not None and event.delta.message else None
            if content is not None and content.text:
                return out.delta(Delta(content=content.text))
            if content is not None and content.thinking:
                return out.delta(Delta(reasoning_content=content.thinking))
        elif isinstance(event, ToolPlanDelta):
            plan = event.delta.message.tool_plan if event.delta is not None and event.delta.message else None
            if plan:
                return out.delta(Delta(reasoning_content=plan))
        elif isinstance(event, ToolCallStart | ToolCallDelta):
            call = event.delta.message.tool_calls if event.delta is not None and event.delta.message else None
            if call is not None and call.function is not None:
                self._tools = True
                if isinstance(event, ToolCallStart):
                    return out.tool_call(event.index, call.id, call.function.name, call.function.arguments)
                return out.tool_arguments(event.index, call.function.arguments)
        elif isinstance(event, MessageStart):
            out.id = event.id or out.id
            return out.start()
        elif isinstance(event, MessageEnd) and event.delta is not None:
            return self._end(event.delta.finish_reason, event.delta.error, event.delta.usage)
        return b""

    def _end(self, raw: str | None, error: str | None, usage: CohereUsage | None) -> bytes:
        """``message-end``: the finish chunk, or OpenAI's error event when the generation failed (the
        record says ``error`` then; the stream ends without usage or ``[DONE]``, as after OpenAI's own)."""
        self._usage = usage
        if failed(raw, error):
            return error_event(error or f"cohere ended the generation with finish_reason {raw}", "server_error", raw)
        self._completed = True
        return self._out.delta(Delta(), openai_finish_reason(finish_reason(raw, self._tools)))

    def close(self) -> bytes:
        tail = self._drain()
        if not self._completed:
            return tail
        return tail + self._out.done(_usage(self._usage) if self._include_usage else None)
