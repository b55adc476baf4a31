"""OpenAI Chat Completions <-> Ollama ``POST /api/chat`` (plain, and NDJSON streams).

Request: sampling parameters go in ``options`` (``max_tokens`` -> ``num_predict``); images must be
base64 data URLs (Ollama cannot fetch a URL: such a part is an unsupported parameter); tool calls
carry their arguments as objects; a tool message names its function (``tool_name``, looked up from
the call it answers); ``response_format`` maps to ``format`` (``"json"`` or the schema). ``stream``
is always sent, as Ollama streams by default. Response: ``thinking`` becomes ``reasoning_content``;
usage is ``prompt_eval_count`` / ``eval_count``; Ollama names no response id, so the router's is used.
https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
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
from llm_obs_middleware.providers.ollama.observe import ReplyStreamObserver, ollama_usage
from llm_obs_middleware.providers.ollama.wire import Reply, ReplyMessage, error_message, finish_reason
from llm_obs_middleware.providers.openai.chat_shapes import (
    ChatMessage,
    ChatRequest,
    ChunkWriter,
    Delta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
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
    arguments_object,
    compact_json,
    data_url,
    openai_error,
    openai_finish_reason,
    openai_usage,
    raw_error_message,
)

__all__ = ["OllamaTranslator"]

_UNSUPPORTED = (
    "n",
    "logprobs",
    *OPENAI_ONLY,
)
_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)
_decode_reply = msgspec.json.Decoder(Reply).decode


def _usage(reply: Reply) -> OpenAIUsage | None:
    """The record's usage as OpenAI's, when the reply has counts (the last line of a stream)."""
    if reply.prompt_eval_count is None and reply.eval_count is None:
        return None
    return openai_usage(ollama_usage(reply))


def _finish(reply: Reply, has_tool_calls: bool) -> str:
    return openai_finish_reason(finish_reason(reply.done_reason, has_tool_calls))


def _text_and_images(message: ChatMessage, skipped: UnsupportedParams) -> tuple[str, list[str]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[str] = []
    for kind, value in user_parts(content, skipped):
        if kind == "text":
            texts.append(value)
        elif (inline := data_url(value)) is not None:
            images.append(inline[1])
        else:
            skipped.add("messages[].content[].image_url")  # by URL: Ollama takes base64 only
    return "".join(texts), images


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name
    messages: list[dict[str, Any]] = []
    for message in chat.messages:
        role = plain_role(message, "ollama")
        text, images = _text_and_images(message, skipped)
        item: dict[str, Any] = {"role": role, "content": text}
        if images:
            item["images"] = images
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                names[call.id] = call.function.name
                arguments = arguments_object(call.function.arguments, call.id)
                calls.append({"id": call.id, "function": {"name": call.function.name, "arguments": arguments}})
            item["tool_calls"] = calls
        if role == "tool":
            call_id = message.tool_call_id or ""
            item["tool_call_id"] = call_id
            if call_id in names:
                item["tool_name"] = names[call_id]
        messages.append(item)
    return messages


def _calls(message: ReplyMessage, response_id: str, first: int = 0) -> list[OutputToolCall]:
    return [
        OutputToolCall(
            id=call.id or f"call_{response_id}_{first + index}",
            function=OutputFunction(call.function.name or "", compact_json(call.function.arguments)),
        )
        for index, call in enumerate(message.tool_calls or ())
        if call.function is not None
    ]


class OllamaTranslator(ChatDecoding):
    """OpenAI Chat Completions to Ollama's chat API and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = unsupported_params("ollama", chat, _UNSUPPORTED)
        if chat.tool_choice is not None and chat.tool_choice != "auto":
            skipped.add("tool_choice")
        body: dict[str, Any] = {"model": model, "messages": _messages(chat, skipped), "stream": bool(chat.stream)}
        options: dict[str, Any] = {}
        copy_params(chat, _SAMPLING, options)
        if chat.output_limit is not None:
            options["num_predict"] = chat.output_limit
        if chat.stop_list:
            options["stop"] = chat.stop_list
        if options:
            body["options"] = options
        if chat.tools:
            body["tools"] = function_tools(chat)
        format_ = chat.response_format
        if format_ is not None and format_.type == "json_object":
            body["format"] = "json"
        elif format_ is not None and format_.type == "json_schema":
            body["format"] = response_schema(chat) or "json"
        elif format_ is not None and format_.type != "text":
            skipped.add("response_format")
        dropped = skipped.resolve(unsupported)
        return UpstreamRequest("/api/chat", encode(body), [], dropped)

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        reply = _decode_reply(body)
        message = reply.message or ReplyMessage()
        calls = _calls(message, context.response_id)
        completion = assistant_completion(
            id=context.response_id,
            created=context.created,
            model=reply.model or context.model,
            texts=[message.content] if message.content else [],
            reasoning=[message.thinking] if message.thinking else [],
            calls=calls,
            finish_reason=_finish(reply, bool(calls)),
            usage=_usage(reply),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> OllamaStream:
        return OllamaStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        error = error_message(body)
        message = error.message if error is not None else None
        code = error.type if error is not None else None
        return openai_error(status, message or raw_error_message(body, "ollama", status), code, retry_after)


class OllamaStream(EventTranslator[Reply]):
    """Ollama's NDJSON lines (decoded by :class:`ReplyStreamObserver`: each a partial response, the last
    with ``done: true``) to OpenAI chunks."""

    __slots__ = ("_done", "_include_usage", "_last", "_out", "_started", "_tools")
    source = ReplyStreamObserver

    def __init__(self, context: ResponseContext) -> None:
        super().__init__()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._started = False
        self._tools = 0
        self._done = False
        self._last: Reply | None = None

    def event(self, response: Reply) -> bytes:
        if response.error is not None:
            return error_event(response.error, "server_error", None)
        out = self._out
        pieces: list[bytes] = []
        if not self._started:
            self._started = True
            out.model = response.model or out.model
            pieces.append(out.start())
        message = response.message
        if message is not None:
            if message.thinking:
                pieces.append(out.delta(Delta(reasoning_content=message.thinking)))
            if message.content:
                pieces.append(out.delta(Delta(content=message.content)))
            for call in _calls(message, out.id, self._tools):
                pieces.append(out.tool_call(self._tools, call.id, call.function.name, call.function.arguments))
                self._tools += 1
        if response.done:
            self._done = True
            self._last = response
            pieces.append(out.delta(Delta(), _finish(response, self._tools > 0)))
        return b"".join(pieces)

    def close(self) -> bytes:
        tail = self._drain()
        if not self._done or self._last is None:
            return tail
        return tail + self._out.done(_usage(self._last) if self._include_usage else None)
