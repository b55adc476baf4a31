"""Incremental observers of Gemini response bodies: generateContent, its SSE stream, embeddings, errors.

Each stream chunk is a whole ``GenerateContentResponse`` carrying the usage so far (a cumulative
snapshot: the last one wins); function calls arrive as whole parts, never as deltas. The stream has
no terminator, so it counts as completed once a candidate reported a ``finishReason`` (or the
prompt was blocked). https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._observing import Accumulator, CapturingBody, ChunkStreamObserver
from llm_obs_middleware.providers.gemini.wire import (
    EmbedResponse,
    GenerateResponse,
    ModalityCount,
    Part,
    SafetyRating,
    UsageMetadata,
    error_status,
    finish_reason,
    retry_delay,
)
from llm_obs_middleware.records.schema import ExtraValue, NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = [
    "EmbedObserver",
    "ErrorObserver",
    "GenerateJSONObserver",
    "GenerateStreamObserver",
    "gemini_usage",
]

_decode_response = msgspec.json.Decoder(GenerateResponse).decode
_decode_chunks = msgspec.json.Decoder(list[GenerateResponse]).decode
_decode_embed = msgspec.json.Decoder(EmbedResponse).decode
_INVALID = "invalid_response"


def _modality(details: list[ModalityCount], modality: str) -> int | None:
    counts = [detail.token_count for detail in details if detail.modality == modality]
    return sum(counts) if counts else None


def gemini_usage(meta: UsageMetadata | None) -> Usage | None:
    """Normalize ``usageMetadata``: input adds tool-use prompt tokens, output adds thinking tokens."""
    if meta is None:
        return None
    input_tokens = meta.prompt_token_count + meta.tool_use_prompt_token_count
    output_tokens = meta.candidates_token_count + meta.thoughts_token_count
    total = meta.total_token_count
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total if total is not None else input_tokens + output_tokens,
        cache_read_tokens=meta.cached_content_token_count,
        reasoning_tokens=meta.thoughts_token_count,
        audio_input_tokens=_modality(meta.prompt_tokens_details, "AUDIO"),
        audio_output_tokens=_modality(meta.candidates_tokens_details, "AUDIO"),
    )


class _Accumulator(Accumulator[GenerateResponse]):
    """What the chunks of one response said so far (one chunk for a plain response)."""

    __slots__ = ("blocked", "error", "id", "reasons", "safety", "usage")

    def __init__(self, capture: bool) -> None:
        super().__init__(capture)
        self.id: str | None = None
        self.usage: UsageMetadata | None = None
        self.reasons: dict[int, str] = {}
        self.safety: dict[int, list[SafetyRating]] = {}
        self.blocked: str | None = None
        self.error: tuple[str, str | None] | None = None

    def add(self, response: GenerateResponse) -> bool:
        """Take in one response/chunk; whether it carried output (text, thoughts or a call)."""
        if response.error is not None:
            error = response.error
            self.error = (error.status or (f"http_{error.code}" if error.code else "stream_error"), error.message)
            return False
        if response.response_id:
            self.id = response.response_id
        if response.model_version:
            self.model = response.model_version
        if response.usage_metadata is not None:
            self.usage = response.usage_metadata  # cumulative snapshot: the last one wins
        if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            self.blocked = response.prompt_feedback.block_reason
        saw_output = False
        for candidate in response.candidates:
            if candidate.finish_reason:
                self.reasons[candidate.index] = candidate.finish_reason
            if candidate.safety_ratings:
                self.safety[candidate.index] = candidate.safety_ratings  # the latest ratings win
            content = candidate.content
            for part in content.parts if content is not None else ():
                if self._part(part):
                    saw_output = True
        return saw_output

    def _part(self, part: Part) -> bool:
        """Take in one content part; whether it carried output."""
        saw_output = False
        if part.text:
            saw_output = True
            self.chars += len(part.text)
            if self.capture and not part.thought:
                self.texts.append(part.text)
        call = part.function_call
        if call is not None:
            saw_output = True
            arguments = bytes(call.args).decode() if call.args else "{}"
            self.chars += len(call.name or "") + len(arguments)
            self.tools.append(ToolCall(id=call.id, name=call.name or "", arguments=arguments))
        return saw_output

    def result(self, *, completed: bool | None, events: int = 0) -> NormalizedResponse:
        raw = [self.reasons[index] for index in sorted(self.reasons)]
        blocked = not raw and self.blocked is not None
        if blocked:
            raw = [self.blocked or ""]
        error = self.error
        if completed is None:  # a stream: finished once a finish reason (or a blocked prompt) arrived
            completed = bool(raw)
        error_type: str | None = None
        message: str | None = None
        if error is not None:
            error_type, message = error
            reason: str | None = "error"
        else:
            if self.problem is not None:
                error_type, message = _INVALID, self.problem
            reason = finish_reason(raw[0] if raw else None, bool(self.tools), blocked=blocked)
        return NormalizedResponse(
            id=self.id,
            model=self.model,
            finish_reasons=raw,
            finish_reason=reason,
            usage=gemini_usage(self.usage),
            tool_calls=self.tools,
            output_text="".join(self.texts) if self.texts else None,
            completed=completed and error is None,
            error_type=error_type,
            error_message=message,
            events=events,
            output_chars=self.chars,
            extra=self._extra(),
        )

    def _extra(self) -> dict[str, ExtraValue]:
        """``gemini.safety_ratings``: ``CATEGORY:PROBABILITY`` (``:BLOCKED`` when it blocked) per rating."""
        if not self.safety:
            return {}
        ratings = [
            f"{rating.category}:{rating.probability}" + (":BLOCKED" if rating.blocked else "")
            for index in sorted(self.safety)
            for rating in self.safety[index]
        ]
        return {"gemini.safety_ratings": ratings}


class GenerateJSONObserver(CapturingBody):
    """A plain ``generateContent`` body, or a ``streamGenerateContent`` answered without ``alt=sse``
    (a JSON array of chunks, ``application/json``)."""

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(completed=False)
        acc = _Accumulator(self._capture)
        try:
            chunks = _decode_chunks(body) if body.lstrip()[:1] == b"[" else [_decode_response(body)]
        except msgspec.DecodeError as exc:
            acc.parse_failed("the response body", exc)
            return acc.result(completed=False)
        for chunk in chunks:
            acc.add(chunk)
        return acc.result(completed=True)


class GenerateStreamObserver(ChunkStreamObserver[GenerateResponse, _Accumulator]):
    """Reads ``streamGenerateContent?alt=sse`` chunks as they pass; marks token arrival for TTFT."""

    __slots__ = ("_parser",)

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        super().__init__(exchange, _Accumulator(capture))
        self._parser = SSEParser()

    _DECODE: ClassVar[Callable[[bytes], GenerateResponse]] = _decode_response

    def feed(self, chunk: bytes, now_ns: int) -> None:
        events = self._parser.feed(chunk)
        if events:
            self._handle([data for _, data in events], now_ns)

    def flush(self) -> None:
        """Read an event left unterminated at the end of the stream (``finish`` does it too)."""
        self._handle([data for _, data in self._parser.close()], 0)

    def finish(self) -> NormalizedResponse:
        self.flush()
        return self._acc.result(completed=None, events=self._events)


class EmbedObserver(BufferedBody):
    """``embedContent`` / ``batchEmbedContents``: the Gemini API reports no token usage for them."""

    __slots__ = ()

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(completed=False)
        try:
            response = _decode_embed(body)
        except msgspec.DecodeError as exc:
            return NormalizedResponse(
                completed=False, error_type=_INVALID, error_message=f"the response body could not be parsed: {exc}"
            )
        meta = response.usage_metadata
        if meta is None:
            return NormalizedResponse()
        total = meta.total_token_count
        return NormalizedResponse(
            usage=Usage(
                input_tokens=meta.prompt_token_count,
                total_tokens=total if total is not None else meta.prompt_token_count,
            )
        )


class ErrorObserver(BufferedBody):
    """An error response (``google.rpc.Status``): the status string (``RESOURCE_EXHAUSTED``...) is the
    error type; ``retry_after_s`` keeps ``RetryInfo.retryDelay`` for whoever retries."""

    __slots__ = ("_status", "retry_after_s")

    def __init__(self, status: int) -> None:
        super().__init__()
        self._status = status
        self.retry_after_s: float | None = None

    def finish(self) -> NormalizedResponse:
        error_type, message = f"http_{self._status}", None
        error = error_status(self._body() or b"")
        if error is not None:
            error_type = error.status or error_type
            message = error.message
            self.retry_after_s = retry_delay(error)
        return NormalizedResponse(completed=False, finish_reason="error", error_type=error_type, error_message=message)
