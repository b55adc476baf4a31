"""OpenAI Chat Completions <-> Bedrock Converse (``/model/{id}/converse`` and ``/converse-stream``).

Request: system/developer messages become ``system`` blocks; turns become ``text``, ``image``
(base64 data URLs only: Converse takes bytes or S3, not URLs), ``toolUse`` and ``toolResult``
blocks (a JSON-object result as ``json``, anything else as ``text``); consecutive turns of one role
are merged, as Converse wants user and assistant to alternate; sampling goes in ``inferenceConfig``,
tools in ``toolConfig``. The router signs the request (SigV4 or a Bedrock API key) as for native
calls. Response: ``reasoningContent`` becomes ``reasoning_content``; usage counts cache reads and
writes in ``prompt_tokens``. The stream is AWS event-stream framed; an exception frame becomes an
in-band OpenAI error. Converse names no id or model, so the router's id and the deployment's model
are reported. https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.codecs.eventstream import EventStreamDecoder
from llm_obs_middleware.providers.openai.chat_shapes import (
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
    arguments_object,
    compact_json,
    data_url,
    openai_error,
    raw_error_message,
)

__all__ = ["BedrockTranslator"]

_UNSUPPORTED = (
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    *OPENAI_ONLY,
)
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class _ToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()


class _ReasoningText(msgspec.Struct):
    text: str | None = None


class _Reasoning(msgspec.Struct, rename="camel"):
    reasoning_text: _ReasoningText | None = None


class _Block(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolUse | None = None
    reasoning_content: _Reasoning | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _Message | None = None


class _Usage(msgspec.Struct, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0


class _Response(msgspec.Struct, rename="camel"):
    output: _Output | None = None
    stop_reason: str | None = None
    usage: _Usage | None = None


class _StartToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str = ""
    name: str = ""


class _Start(msgspec.Struct, rename="camel"):
    tool_use: _StartToolUse | None = None


class _DeltaToolUse(msgspec.Struct):
    input: str = ""


class _DeltaReasoning(msgspec.Struct):
    text: str | None = None


class _BlockDelta(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _DeltaToolUse | None = None
    reasoning_content: _DeltaReasoning | None = None


class _Event(msgspec.Struct, rename="camel"):
    content_block_index: int = 0
    start: _Start | None = None
    delta: _BlockDelta | None = None
    stop_reason: str | None = None
    usage: _Usage | None = None
    message: str | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    Message: str | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_decode_error = msgspec.json.Decoder(_Error).decode


def _usage(usage: _Usage | None) -> OpenAIUsage | None:
    if usage is None:
        return None
    cached = usage.cache_read_input_tokens
    prompt = usage.input_tokens + cached + usage.cache_write_input_tokens
    completion = usage.output_tokens
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=usage.total_tokens if usage.total_tokens is not None else prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "end_turn", "stop")


def _blocks(message: ChatMessage, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            if part.text:
                blocks.append({"text": part.text})
        elif part.type == "image_url" and part.image_url is not None and message.role == "user":
            inline = data_url(part.image_url.url)
            image_format = _IMAGE_FORMATS.get(inline[0]) if inline is not None else None
            if inline is None or image_format is None:
                skipped.add("messages[].content[].image_url")  # by URL, or not png/jpeg/gif/webp
            else:
                blocks.append({"image": {"format": image_format, "source": {"bytes": inline[1]}}})
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return blocks


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    content = message.content
    text = content if isinstance(content, str) else "".join(part.text or "" for part in content or ())
    stripped = text.strip()
    result: dict[str, Any] = {"text": text or " "}
    if stripped.startswith("{"):
        try:
            _decode_object(stripped)
            result = {"json": msgspec.Raw(stripped.encode())}
        except msgspec.DecodeError:
            pass
    return {"toolResult": {"toolUseId": message.tool_call_id or "", "content": [result]}}


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in chat.messages:
        role = message.role
        if role in ("system", "developer"):
            system.extend(_blocks(message, skipped))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif role == "user":
            blocks = _blocks(message, skipped)
        elif role == "assistant":
            blocks = _blocks(message, skipped)
            for call in message.tool_calls or ():
                arguments = arguments_object(call.function.arguments, call.id)
                blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to bedrock", param="messages")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Converse wants the roles to alternate
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


class BedrockTranslator(ChatDecoding):
    """OpenAI Chat Completions to Bedrock Converse and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = UnsupportedParams("bedrock")
        skipped.check(chat, _UNSUPPORTED)
        system, turns = _messages(chat, skipped)
        body: dict[str, Any] = {"messages": turns}
        if system:
            body["system"] = system
        config: dict[str, Any] = {}
        if chat.output_limit is not None:
            config["maxTokens"] = chat.output_limit
        if chat.temperature is not None:
            config["temperature"] = chat.temperature
        if chat.top_p is not None:
            config["topP"] = chat.top_p
        if chat.stop_list:
            config["stopSequences"] = chat.stop_list
        if config:
            body["inferenceConfig"] = config
        if chat.tools:
            tools = [
                {
                    "toolSpec": {
                        "name": tool.function.name,
                        **({"description": tool.function.description} if tool.function.description else {}),
                        "inputSchema": {
                            "json": tool.function.parameters if present(tool.function.parameters) else _EMPTY_SCHEMA
                        },
                    }
                }
                for tool in chat.tools
            ]
            tool_config: dict[str, Any] = {"tools": tools}
            choice = self._tool_choice(chat, skipped)
            if choice is not None:
                tool_config["toolChoice"] = choice
            body["toolConfig"] = tool_config
        if chat.parallel_tool_calls is False:
            skipped.add("parallel_tool_calls")
        format_ = chat.response_format
        if format_ is not None and format_.type != "text":
            skipped.add("response_format")
        dropped = skipped.resolve(unsupported)
        method = "converse-stream" if chat.stream else "converse"
        # Encoded as botocore encodes a URI label (":" of "...-v1:0" as %3A), so SigV4 signs what is sent.
        return UpstreamRequest(f"/model/{quote(model, safe='')}/{method}", encode(body), [], dropped)

    @staticmethod
    def _tool_choice(chat: ChatRequest, skipped: UnsupportedParams) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None or choice == "auto":
            return {"auto": {}} if choice else None
        if choice == "required":
            return {"any": {}}
        if isinstance(choice, str):
            skipped.add("tool_choice")  # "none": Converse cannot forbid the tools it is given
            return None
        if choice.function is None:
            raise TranslationError("tool_choice: a named choice needs function.name", param="tool_choice")
        return {"tool": {"name": choice.function.name}}

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        response = _decode_response(body)
        message = response.output.message if response.output is not None else None
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[OutputToolCall] = []
        for block in message.content if message is not None else ():
            if block.text:
                texts.append(block.text)
            elif block.tool_use is not None:
                use = block.tool_use
                calls.append(
                    OutputToolCall(id=use.tool_use_id, function=OutputFunction(use.name, compact_json(use.input)))
                )
            elif block.reasoning_content is not None and block.reasoning_content.reasoning_text is not None:
                reasoning.append(block.reasoning_content.reasoning_text.text or "")
        completion = assistant_completion(
            id=context.response_id,
            created=context.created,
            model=context.model,
            texts=texts,
            reasoning=reasoning,
            calls=calls,
            finish_reason=_finish(response.stop_reason),
            usage=_usage(response.usage),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> BedrockStream:
        return BedrockStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        try:
            decoded = _decode_error(body)
            message = decoded.message or decoded.Message
        except msgspec.DecodeError:
            message = None
        if not message:
            message = raw_error_message(body, "bedrock", status)
        code = headers.get("x-amzn-errortype", "").partition(":")[0] or None
        return openai_error(status, message, code, retry_after)


class BedrockStream:
    """ConverseStream's event-stream frames to OpenAI chunks, frame by frame."""

    __slots__ = ("_blocks", "_decoder", "_failed", "_include_usage", "_out", "_stopped", "_usage")

    def __init__(self, context: ResponseContext) -> None:
        self._decoder = EventStreamDecoder()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._blocks: dict[int, int] = {}  # content block index -> OpenAI tool call index
        self._usage: _Usage | None = None
        self._stopped = False
        self._failed = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._frame(message.headers, message.payload) for message in self._decoder.feed(chunk)])

    def _frame(self, headers: Mapping[str, object], payload: bytes) -> bytes:
        try:
            event = _decode_event(payload)
        except msgspec.DecodeError:
            return b""
        if headers.get(":message-type") != "event":
            self._failed = True
            kind = str(headers.get(":exception-type") or headers.get(":error-code") or "exception")
            return error_event(event.message or kind, "server_error", kind)
        out = self._out
        name = headers.get(":event-type")
        if name == "contentBlockDelta" and event.delta is not None:
            delta = event.delta
            if delta.text:
                return out.delta(Delta(content=delta.text))
            if delta.reasoning_content is not None and delta.reasoning_content.text:
                return out.delta(Delta(reasoning_content=delta.reasoning_content.text))
            if delta.tool_use is not None and delta.tool_use.input:
                index = self._blocks.get(event.content_block_index)
                if index is not None:
                    call = ToolCallDelta(index=index, function=FunctionDelta(arguments=delta.tool_use.input))
                    return out.delta(Delta(tool_calls=[call]))
        elif name == "contentBlockStart" and event.start is not None and event.start.tool_use is not None:
            use = event.start.tool_use
            index = self._blocks[event.content_block_index] = len(self._blocks)
            function = FunctionDelta(name=use.name, arguments="")
            call = ToolCallDelta(index=index, id=use.tool_use_id, type="function", function=function)
            return out.delta(Delta(tool_calls=[call]))
        elif name == "messageStart":
            return out.delta(Delta(role="assistant", content=""))
        elif name == "messageStop":
            self._stopped = True
            return out.delta(Delta(), _finish(event.stop_reason))
        elif name == "metadata":
            self._usage = event.usage
        return b""

    def close(self) -> bytes:
        self._decoder.close()
        if not self._stopped or self._failed:
            return b""
        usage = _usage(self._usage) if self._include_usage else None
        return (self._out.usage(usage) if usage is not None else b"") + DONE
