"""Gemini ``GenerateContentResponse`` (plain, or its ``alt=sse`` stream) to OpenAI Chat Completions.

Read with the package's wire Structs; the finish reason is the record's (:func:`.wire.finish_reason`)
in OpenAI's vocabulary, the usage the record's (:func:`.observe.gemini_usage`). Gemini gives function
calls no ids, so each gets ``call_<responseId>_<n>``; thought parts become ``reasoning_content``.
An in-band ``{"error": ...}`` chunk becomes OpenAI's error event, and the stream then ends without
``[DONE]``. https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse
"""

from __future__ import annotations

import msgspec

from llm_obs_middleware.providers.gemini.observe import GenerateStreamObserver, gemini_usage
from llm_obs_middleware.providers.gemini.wire import GenerateResponse, UsageMetadata, finish_reason
from llm_obs_middleware.providers.openai.chat_shapes import (
    ChunkWriter,
    Completion,
    CompletionChoice,
    CompletionMessage,
    Delta,
    OutputFunction,
    OutputToolCall,
    encode,
    error_event,
)
from llm_obs_middleware.providers.translate_base import (
    EventTranslator,
    ResponseContext,
    compact_json,
    openai_finish_reason,
    openai_usage,
)

__all__ = ["GeminiStream", "completion"]

_decode_response = msgspec.json.Decoder(GenerateResponse).decode


def _finish(raw: str | None, has_tool_calls: bool, *, blocked: bool = False) -> str:
    return openai_finish_reason(finish_reason(raw, has_tool_calls, blocked=blocked))


def _call_id(response_id: str, candidate: int, index: int) -> str:
    prefix = f"call_{response_id}" if response_id else "call"
    return f"{prefix}_{index}" if candidate == 0 else f"{prefix}_{candidate}_{index}"


def _blocked(response: GenerateResponse) -> str | None:
    """The prompt's ``blockReason`` when the answer has no candidate (the prompt itself was blocked)."""
    feedback = response.prompt_feedback
    return feedback.block_reason if not response.candidates and feedback is not None else None


def completion(body: bytes, context: ResponseContext) -> bytes:
    """A plain ``generateContent`` answer as a ``chat.completion``."""
    response = _decode_response(body)
    response_id = response.response_id or context.response_id
    choices = []
    for candidate in response.candidates:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[OutputToolCall] = []
        for part in candidate.content.parts if candidate.content is not None else ():
            call = part.function_call
            if call is not None:
                call_id = _call_id(response_id, candidate.index, len(calls))
                calls.append(
                    OutputToolCall(id=call_id, function=OutputFunction(call.name or "", compact_json(call.args)))
                )
            elif part.text:
                (thoughts if part.thought else texts).append(part.text)
        message = CompletionMessage(
            role="assistant",
            content="".join(texts) if texts or not calls else None,
            reasoning_content="".join(thoughts) or None,
            tool_calls=calls or None,
        )
        finish = _finish(candidate.finish_reason, bool(calls))
        choices.append(CompletionChoice(index=candidate.index, message=message, finish_reason=finish))
    if not choices:  # the prompt itself was blocked (or nothing came back)
        blocked = _blocked(response)
        message = CompletionMessage(role="assistant", content=None if blocked else "")
        choices.append(CompletionChoice(index=0, message=message, finish_reason=_finish(blocked, False, blocked=True)))
    answer = Completion(
        id=response_id,
        created=context.created,
        model=response.model_version or context.model,
        choices=choices,
        usage=openai_usage(gemini_usage(response.usage_metadata)),
    )
    return encode(answer)


class GeminiStream(EventTranslator[GenerateResponse]):
    """Gemini's stream chunks (decoded by :class:`GenerateStreamObserver`) to OpenAI chunks, one per candidate part."""

    __slots__ = ("_finished", "_include_usage", "_named", "_out", "_started", "_tools", "_usage")
    source = GenerateStreamObserver

    def __init__(self, context: ResponseContext) -> None:
        super().__init__()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._named = False  # id and model taken from the first response
        self._usage: UsageMetadata | None = None
        self._started: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._finished = False

    def event(self, response: GenerateResponse) -> bytes:
        if response.error is not None:
            error = response.error
            return error_event(error.message or "gemini stream error", "server_error", error.status)
        writer = self._out
        if not self._named:
            self._named = True
            writer.id = response.response_id or writer.id
            writer.model = response.model_version or writer.model
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata
        out: list[bytes] = []
        blocked = _blocked(response)
        if blocked:
            out.append(self._start(0))
            out.append(writer.delta(Delta(), _finish(blocked, False, blocked=True)))
            self._finished = True
        for candidate in response.candidates:
            index = candidate.index
            if index not in self._started:
                out.append(self._start(index))
            for part in candidate.content.parts if candidate.content is not None else ():
                call = part.function_call
                if call is not None:
                    number = self._tools.get(index, 0)
                    self._tools[index] = number + 1
                    call_id = _call_id(writer.id, index, number)
                    out.append(writer.tool_call(number, call_id, call.name or "", compact_json(call.args), index))
                elif part.text:
                    text = Delta(reasoning_content=part.text) if part.thought else Delta(content=part.text)
                    out.append(writer.delta(text, index=index))
            if candidate.finish_reason is not None:
                finish = _finish(candidate.finish_reason, index in self._tools)
                out.append(writer.delta(Delta(), finish, index=index))
                self._finished = True
        return b"".join(out)

    def _start(self, index: int) -> bytes:
        self._started.add(index)
        return self._out.start(index)

    def close(self) -> bytes:
        tail = self._drain()
        if not self._finished:
            return tail  # cut short: no [DONE], so the client can tell
        return tail + self._out.done(openai_usage(gemini_usage(self._usage)) if self._include_usage else None)
