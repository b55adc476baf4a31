"""Incremental observers of OpenAI response bodies: chat completions, embeddings and errors.

The Responses API's observers are in :mod:`.observe_responses`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._observing import CapturingBody, StatusBody, ToolSlots
from llm_obs_middleware.providers.base import normalize_finish_reason
from llm_obs_middleware.providers.openai.wire import (
    ChatChunk,
    ChatUsage,
    EmbeddingsResponse,
    ErrorEnvelope,
)
from llm_obs_middleware.records.schema import ExtraValue, NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.providers.openai.wire import _ChatMessage

__all__ = [
    "ChatJSONObserver",
    "ChatStreamObserver",
    "EmbeddingsObserver",
    "ErrorObserver",
    "chat_usage",
    "vendor_extra",
]

_decode_chunk = msgspec.json.Decoder(ChatChunk).decode
_decode_embeddings = msgspec.json.Decoder(EmbeddingsResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode


def chat_usage(usage: ChatUsage | None) -> Usage | None:
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    cache_read = prompt.cached_tokens if prompt is not None else None
    if cache_read is None:
        cache_read = usage.prompt_cache_hit_tokens
    total = usage.total_tokens
    if total is None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        total = usage.prompt_tokens + usage.completion_tokens
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=total,
        cache_read_tokens=cache_read,
        reasoning_tokens=completion.reasoning_tokens if completion is not None else None,
        audio_input_tokens=prompt.audio_tokens if prompt is not None else None,
        audio_output_tokens=completion.audio_tokens if completion is not None else None,
    )


class ChatJSONObserver(CapturingBody):
    def _result(self, body: bytes) -> NormalizedResponse:
        chunk = _decode_chunk(body)
        tool_calls: list[ToolCall] = []
        raw_reasons: list[str] = []
        texts: list[str] = []
        chars = 0
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                raw_reasons.append(choice.finish_reason)
            message = choice.message
            if message is None:
                continue
            chars += _message_chars(message)
            if message.content and self._capture:
                texts.append(message.content)
            for call in message.tool_calls or ():
                function = call.function
                tool_calls.append(
                    ToolCall(
                        id=call.id,
                        name=(function.name if function else None) or "",
                        arguments=(function.arguments if function else None) or "",
                    )
                )
        return NormalizedResponse(
            id=chunk.id,
            model=chunk.model,
            finish_reasons=raw_reasons,
            finish_reason=normalize_finish_reason(raw_reasons[0] if raw_reasons else None, bool(tool_calls)),
            usage=chat_usage(chunk.usage),
            tool_calls=tool_calls,
            output_text="".join(texts) if texts else None,
            output_chars=chars,
            extra=vendor_extra(chunk.system_fingerprint, chunk.service_tier),
        )


def vendor_extra(fingerprint: str | None, tier: str | None) -> dict[str, ExtraValue]:
    """OpenAI's vendor extras: the backend configuration fingerprint and the tier that served."""
    extra: dict[str, ExtraValue] = {}
    if fingerprint:
        extra["openai.system_fingerprint"] = fingerprint
    if tier:
        extra["openai.service_tier"] = tier
    return extra


def _message_chars(message: _ChatMessage) -> int:
    """Characters of generated output in a message or delta (kept for token estimation, text is not)."""
    chars = len(message.content or "") + len(message.reasoning_content or "") + len(message.refusal or "")
    for call in message.tool_calls or ():
        if call.function is not None:
            chars += len(call.function.name or "") + len(call.function.arguments or "")
    return chars


class ChatStreamObserver:
    """Reads ``chat.completion.chunk`` events as they pass; marks token arrival for TTFT."""

    __slots__ = (
        "_capture",
        "_chars",
        "_done",
        "_error",
        "_events",
        "_exchange",
        "_fingerprint",
        "_id",
        "_model",
        "_parser",
        "_reasons",
        "_texts",
        "_tier",
        "_tools",
        "_usage",
    )

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        self._exchange = exchange
        self._capture = capture
        self._parser = SSEParser()
        self._id: str | None = None
        self._model: str | None = None
        self._fingerprint: str | None = None
        self._tier: str | None = None
        self._usage: ChatUsage | None = None
        self._reasons: dict[int, str] = {}
        self._tools = ToolSlots()  # by (choice index, tool index)
        self._texts: list[str] = []
        self._chars = 0
        self._events = 0
        self._done = False
        self._error: tuple[str, str | None] | None = None

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._handle(self._parser.feed(chunk), now_ns)

    def _handle(self, events: list[tuple[bytes, bytes]], now_ns: int) -> None:
        saw_token = False
        for _, data in events:
            if data == b"[DONE]":
                self._done = True
                continue
            self._events += 1
            try:
                chunk = _decode_chunk(data)
            except msgspec.DecodeError:
                continue  # unknown events pass through uncounted
            if self._take(chunk):
                saw_token = True
        if saw_token:
            self._exchange.mark_token(now_ns)

    def _take(self, chunk: ChatChunk) -> bool:
        """Fold one chunk into the state; ``True`` when it carried output tokens."""
        if chunk.error is not None:
            self._error = (str(chunk.error.code or chunk.error.type or "stream_error"), chunk.error.message)
            return False
        if not self._id and chunk.id:
            self._id = chunk.id  # Azure's prompt-filter preamble chunk has id "": skip it
        if chunk.model:
            self._model = chunk.model
        if chunk.system_fingerprint:
            self._fingerprint = chunk.system_fingerprint
        if chunk.service_tier:
            self._tier = chunk.service_tier
        usage = chunk.usage if chunk.usage is not None else chunk.x_groq.usage if chunk.x_groq else None
        if usage is not None:
            self._usage = usage  # cumulative snapshot: the last one wins
        saw_token = False
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self._reasons[choice.index] = choice.finish_reason
            delta = choice.delta
            if delta is not None and self._delta(choice.index, delta):
                saw_token = True
        return saw_token

    def _delta(self, index: int, delta: _ChatMessage) -> bool:
        saw_token = False
        if delta.content or delta.reasoning_content or delta.refusal:
            saw_token = True
            self._chars += len(delta.content or "") + len(delta.reasoning_content or "") + len(delta.refusal or "")
            if self._capture and delta.content:
                self._texts.append(delta.content)
        for call in delta.tool_calls or ():
            saw_token = True
            function = call.function
            slot = self._tools.slot((index, call.index))
            if function is None:
                slot.add(call.id, None, None)
            else:
                self._chars += slot.add(call.id, function.name, function.arguments)
        return saw_token

    def finish(self) -> NormalizedResponse:
        self._handle(self._parser.close(), 0)
        tool_calls = self._tools.calls()
        raw = [self._reasons[i] for i in sorted(self._reasons)]
        error = self._error
        return NormalizedResponse(
            id=self._id,
            model=self._model,
            finish_reasons=raw,
            finish_reason="error" if error else normalize_finish_reason(raw[0] if raw else None, bool(tool_calls)),
            usage=chat_usage(self._usage),
            tool_calls=tool_calls,
            output_text="".join(self._texts) if self._texts else None,
            output_chars=self._chars,
            completed=self._done and error is None,
            error_type=error[0] if error else None,
            error_message=error[1] if error else None,
            events=self._events,
            extra=vendor_extra(self._fingerprint, self._tier),
        )


class EmbeddingsObserver(BufferedBody):
    __slots__ = ()

    def _result(self, body: bytes) -> NormalizedResponse:
        response = _decode_embeddings(body)
        usage = response.usage
        return NormalizedResponse(
            model=response.model,
            usage=Usage(input_tokens=usage.prompt_tokens, total_tokens=usage.total_tokens) if usage else None,
        )


class ErrorObserver(StatusBody):
    """An error response: keep the provider's error type and message for the record."""

    def finish(self) -> NormalizedResponse:
        body = self._body() or b""
        error_type = f"http_{self._status}"
        message: str | None = None
        try:
            envelope = _decode_error(body)
        except msgspec.DecodeError:
            envelope = None
        if envelope is not None and envelope.error is not None:
            if isinstance(envelope.error, str):
                message = envelope.error
            else:
                error_type = str(envelope.error.code or envelope.error.type or error_type)
                message = envelope.error.message
        return NormalizedResponse(completed=False, finish_reason="error", error_type=error_type, error_message=message)
