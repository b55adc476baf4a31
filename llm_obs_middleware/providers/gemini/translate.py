"""OpenAI Chat Completions <-> Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``.

Request: system/developer messages become ``systemInstruction``; assistant turns are ``model``
contents with ``functionCall`` parts; tool messages become ``functionResponse`` parts (named after
the call they answer; a result that is not a JSON object is sent as ``{"content": <text>}``, as
Gemini wants an object); images by base64 data URL become ``inlineData``, by URL ``fileData``.
Tools are declared with ``parametersJsonSchema`` (the JSON Schema as sent), ``response_format``
maps to ``responseMimeType`` / ``responseJsonSchema``. Response: Gemini gives function calls no
ids, so each gets ``call_<responseId>_<n>``; thought parts become ``reasoning_content``; usage
counts thoughts in ``completion_tokens`` (and ``reasoning_tokens``), cached content in
``cached_tokens``. https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers.openai.chat_shapes import (
    ABSENT,
    ChatMessage,
    ChatRequest,
    ChunkWriter,
    Completion,
    CompletionChoice,
    CompletionMessage,
    CompletionTokensDetails,
    Delta,
    FunctionDelta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    PromptTokensDetails,
    ToolCallDelta,
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
    retry_after_seconds,
)

__all__ = ["GeminiTranslator"]

_UNSUPPORTED = (
    "logprobs",
    *OPENAI_ONLY,
)
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_CALLING_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


# --- Gemini response shapes (only what is mapped) ------------------------------------------------


class _FunctionCall(msgspec.Struct):
    name: str = ""
    args: msgspec.Raw = ABSENT


class _Part(msgspec.Struct):
    text: str | None = None
    thought: bool | None = None
    functionCall: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: str | None = None
    index: int = 0


class _Usage(msgspec.Struct):
    promptTokenCount: int = 0
    candidatesTokenCount: int = 0
    totalTokenCount: int | None = None
    cachedContentTokenCount: int = 0
    thoughtsTokenCount: int = 0
    toolUsePromptTokenCount: int = 0


class _Feedback(msgspec.Struct):
    blockReason: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str = ""
    status: str | None = None
    details: list[dict[str, Any]] = []


class _Response(msgspec.Struct):
    candidates: list[_Candidate] = []
    usageMetadata: _Usage | None = None
    modelVersion: str = ""
    responseId: str = ""
    promptFeedback: _Feedback | None = None
    error: _ErrorDetail | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_error = msgspec.json.Decoder(_ErrorBody).decode


def _usage(usage: _Usage | None) -> OpenAIUsage | None:
    if usage is None:
        return None
    prompt = usage.promptTokenCount + usage.toolUsePromptTokenCount
    completion = usage.candidatesTokenCount + usage.thoughtsTokenCount
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=usage.totalTokenCount if usage.totalTokenCount is not None else prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cachedContentTokenCount),
        completion_tokens_details=(
            CompletionTokensDetails(reasoning_tokens=usage.thoughtsTokenCount) if usage.thoughtsTokenCount else None
        ),
    )


def _finish(reason: str | None, has_tool_calls: bool) -> str:
    mapped = _FINISH.get(reason or "STOP", "stop")
    return "tool_calls" if mapped == "stop" and has_tool_calls else mapped


# --- request ----------------------------------------------------------------------------------------


def _text(message: ChatMessage, where: str) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise TranslationError(f"{where} messages may hold only text parts, not {part.type!r}", param="messages")
        texts.append(part.text or "")
    return "".join(texts)


def _user_parts(message: ChatMessage, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append({"text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            url = part.image_url.url
            inline = data_url(url)
            if inline is not None:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                guessed = mimetypes.guess_type(url.partition("?")[0])[0]
                file_data = {"fileUri": url, **({"mimeType": guessed} if guessed else {})}
                parts.append({"fileData": file_data})
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return parts


def _function_response(text: str) -> msgspec.Raw | dict[str, str]:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            _decode_object(stripped)
            return msgspec.Raw(stripped.encode())
        except msgspec.DecodeError:
            pass
    return {"content": text}


def _contents(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name (Gemini answers a call by name)
    results: list[dict[str, Any]] | None = None
    for message in chat.messages:
        role = message.role
        if role == "tool":
            if results is None:
                results = []
                contents.append({"role": "user", "parts": results})
            call_id = message.tool_call_id or ""
            if call_id not in names:
                raise TranslationError(
                    f"tool message answers {call_id!r}, which no earlier assistant message called", param="messages"
                )
            response = _function_response(_text(message, "tool"))
            results.append({"functionResponse": {"name": names[call_id], "response": response}})
            continue
        if role == "user" and results is not None:  # a user message right after tool results joins their turn
            results.extend(_user_parts(message, skipped))
            results = None
            continue
        results = None
        if role in ("system", "developer"):
            system.append({"text": _text(message, role)})
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(message, skipped)})
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            text = _text(message, "assistant")
            if text:
                parts.append({"text": text})
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                args = arguments_object(call.function.arguments, call.id)
                parts.append({"functionCall": {"name": call.function.name, "args": args}})
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to gemini", param="messages")
    return system, contents


class GeminiTranslator(ChatDecoding):
    """OpenAI Chat Completions to Gemini generateContent and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = UnsupportedParams("gemini")
        skipped.check(chat, _UNSUPPORTED)
        if chat.parallel_tool_calls is False:
            skipped.add("parallel_tool_calls")
        system, contents = _contents(chat, skipped)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        config = self._generation_config(chat, skipped)
        if config:
            body["generationConfig"] = config
        if chat.tools:
            declarations = []
            for tool in chat.tools:
                function = tool.function
                declaration: dict[str, Any] = {"name": function.name}
                if function.description:
                    declaration["description"] = function.description
                schema = function.parameters if present(function.parameters) else _EMPTY_SCHEMA
                declaration["parametersJsonSchema"] = schema
                declarations.append(declaration)
            body["tools"] = [{"functionDeclarations": declarations}]
        calling = self._calling_config(chat)
        if calling is not None:
            body["toolConfig"] = {"functionCallingConfig": calling}
        dropped = skipped.resolve(unsupported)
        name = quote(model.removeprefix("models/"), safe="")  # a client's model name stays one path segment
        method = "streamGenerateContent?alt=sse" if chat.stream else "generateContent"
        path = f"/v1beta/models/{name}:{method}"
        return UpstreamRequest(path, encode(body), [], dropped)

    @staticmethod
    def _generation_config(chat: ChatRequest, skipped: UnsupportedParams) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for ours, theirs in (
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("n", "candidateCount"),
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ):
            value = getattr(chat, ours)
            if value is not None:
                config[theirs] = value
        if chat.output_limit is not None:
            config["maxOutputTokens"] = chat.output_limit
        if chat.stop_list:
            config["stopSequences"] = chat.stop_list
        format_ = chat.response_format
        if format_ is not None:
            if format_.type == "json_object":
                config["responseMimeType"] = "application/json"
            elif format_.type == "json_schema":
                config["responseMimeType"] = "application/json"
                if format_.json_schema is not None and present(format_.json_schema.schema):
                    config["responseJsonSchema"] = format_.json_schema.schema
            elif format_.type != "text":
                skipped.add("response_format")
        return config

    @staticmethod
    def _calling_config(chat: ChatRequest) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None:
            return None
        if isinstance(choice, str):
            if choice not in _CALLING_MODE:
                raise TranslationError(f"tool_choice {choice!r} is not auto, required or none", param="tool_choice")
            return {"mode": _CALLING_MODE[choice]}
        if choice.function is None:
            raise TranslationError("tool_choice: a named choice needs function.name", param="tool_choice")
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        response = _decode_response(body)
        response_id = response.responseId or context.response_id
        choices = []
        for candidate in response.candidates:
            texts: list[str] = []
            thoughts: list[str] = []
            calls: list[OutputToolCall] = []
            for part in candidate.content.parts if candidate.content is not None else ():
                if part.functionCall is not None:
                    arguments = compact_json(part.functionCall.args)
                    call_id = _call_id(response_id, candidate.index, len(calls))
                    calls.append(OutputToolCall(id=call_id, function=OutputFunction(part.functionCall.name, arguments)))
                elif part.text:
                    (thoughts if part.thought else texts).append(part.text)
            message = CompletionMessage(
                role="assistant",
                content="".join(texts) if texts or not calls else None,
                reasoning_content="".join(thoughts) or None,
                tool_calls=calls or None,
            )
            finish = _finish(candidate.finishReason, bool(calls))
            choices.append(CompletionChoice(index=candidate.index, message=message, finish_reason=finish))
        if not choices:  # the prompt itself was blocked
            blocked = response.promptFeedback is not None and response.promptFeedback.blockReason is not None
            message = CompletionMessage(role="assistant", content=None if blocked else "")
            finish = "content_filter" if blocked else "stop"
            choices.append(CompletionChoice(index=0, message=message, finish_reason=finish))
        completion = Completion(
            id=response_id,
            created=context.created,
            model=response.modelVersion or context.model,
            choices=choices,
            usage=_usage(response.usageMetadata),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> GeminiStream:
        return GeminiStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        try:
            detail = _decode_error(body).error
        except msgspec.DecodeError:
            detail = None
        if detail is None:
            message = raw_error_message(body, "gemini", status)
            return openai_error(status, message, None, retry_after)
        if retry_after is None:
            for item in detail.details:
                if str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
                    retry_after = retry_after_seconds(str(item.get("retryDelay", "")))
        return openai_error(status, detail.message, detail.status, retry_after)


def _call_id(response_id: str, candidate: int, index: int) -> str:
    prefix = f"call_{response_id}" if response_id else "call"
    return f"{prefix}_{index}" if candidate == 0 else f"{prefix}_{candidate}_{index}"


class GeminiStream:
    """Gemini's SSE responses (each a partial ``GenerateContentResponse``) to OpenAI chunks."""

    __slots__ = ("_finished", "_include_usage", "_named", "_out", "_parser", "_started", "_tools", "_usage")

    def __init__(self, context: ResponseContext) -> None:
        self._parser = SSEParser()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._named = False  # id and model taken from the first response
        self._usage: _Usage | None = None
        self._started: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(data) for _name, data in self._parser.feed(chunk)])

    def _event(self, data: bytes) -> bytes:
        try:
            response = _decode_response(data)
        except msgspec.DecodeError:
            return b""
        if response.error is not None:
            return error_event(response.error.message, "server_error", response.error.status)
        writer = self._out
        if not self._named:
            self._named = True
            writer.id = response.responseId or writer.id
            writer.model = response.modelVersion or writer.model
        if response.usageMetadata is not None:
            self._usage = response.usageMetadata
        out: list[bytes] = []
        if not response.candidates and response.promptFeedback is not None and response.promptFeedback.blockReason:
            out.append(self._start(0))
            out.append(writer.delta(Delta(), "content_filter"))
            self._finished = True
        for candidate in response.candidates:
            index = candidate.index
            if index not in self._started:
                out.append(self._start(index))
            for part in candidate.content.parts if candidate.content is not None else ():
                if part.functionCall is not None:
                    number = self._tools.get(index, 0)
                    self._tools[index] = number + 1
                    function = FunctionDelta(
                        name=part.functionCall.name, arguments=compact_json(part.functionCall.args)
                    )
                    call_id = _call_id(writer.id, index, number)
                    call = ToolCallDelta(index=number, id=call_id, type="function", function=function)
                    out.append(writer.delta(Delta(tool_calls=[call]), index=index))
                elif part.text:
                    delta = Delta(reasoning_content=part.text) if part.thought else Delta(content=part.text)
                    out.append(writer.delta(delta, index=index))
            if candidate.finishReason is not None:
                finish = _finish(candidate.finishReason, index in self._tools)
                out.append(writer.delta(Delta(), finish, index=index))
                self._finished = True
        return b"".join(out)

    def _start(self, index: int) -> bytes:
        self._started.add(index)
        return self._out.delta(Delta(role="assistant", content=""), index=index)

    def close(self) -> bytes:
        tail = b"".join([self._event(data) for _name, data in self._parser.close()])
        if not self._finished:
            return tail  # cut short: no [DONE], so the client can tell
        usage = _usage(self._usage) if self._include_usage else None
        return tail + (self._out.usage(usage) if usage is not None else b"") + DONE
