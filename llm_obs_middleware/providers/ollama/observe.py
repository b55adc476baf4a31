"""Incremental observers of Ollama response bodies: chat/generate (plain and NDJSON), embed, errors.

A stream is one JSON object per line; the last one has ``"done": true`` and carries the counts
(``prompt_eval_count`` / ``eval_count``, omitted by Ollama when zero) and ``done_reason``. A failure
after the status went out arrives as a ``{"error": "..."}`` line.
https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import msgspec

from llm_obs_middleware.codecs.ndjson import NDJSONSplitter
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._observing import Accumulator, CapturingBody, ChunkStreamObserver, StatusBody
from llm_obs_middleware.providers.ollama.wire import EmbedResponse, Reply, error_message, finish_reason
from llm_obs_middleware.records.schema import ExtraValue, NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = ["EmbedObserver", "ErrorObserver", "ReplyJSONObserver", "ReplyStreamObserver", "ollama_usage"]

_decode_reply = msgspec.json.Decoder(Reply).decode
_decode_embed = msgspec.json.Decoder(EmbedResponse).decode
_INVALID = "invalid_response"


def ollama_usage(reply: Reply) -> Usage:
    """Counts of a final (``done``) reply; Go's ``omitempty`` drops zero counts, so absent is 0."""
    input_tokens = reply.prompt_eval_count or 0
    output_tokens = reply.eval_count or 0
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens)


class _Accumulator(Accumulator[Reply]):
    __slots__ = ("done", "error", "extra", "reason", "usage")

    def __init__(self, capture: bool) -> None:
        super().__init__(capture)
        self.reason: str | None = None
        self.done = False
        self.usage: Usage | None = None
        self.error: str | None = None
        self.extra: dict[str, ExtraValue] = {}

    def add(self, reply: Reply) -> bool:
        """Take in one reply/line; whether it carried output (text, thinking or a tool call)."""
        if reply.error is not None:
            self.error = reply.error
            return False
        if reply.model:
            self.model = reply.model
        if reply.done:
            self.done = True
            self.reason = reply.done_reason
            self.usage = ollama_usage(reply)
            self.extra = _durations(reply)
        saw_output = False
        message = reply.message
        text = message.content if message is not None else reply.response
        thinking = message.thinking if message is not None else reply.thinking
        if text:
            saw_output = True
            self.chars += len(text)
            if self.capture:
                self.texts.append(text)
        if thinking:
            saw_output = True
            self.chars += len(thinking)
        for call in (message.tool_calls if message is not None else None) or ():
            saw_output = True
            function = call.function
            name = (function.name if function else None) or ""
            arguments = bytes(function.arguments).decode() if function and function.arguments else "{}"
            self.chars += len(name) + len(arguments)
            self.tools.append(ToolCall(id=call.id, name=name, arguments=arguments))
        return saw_output

    def result(self, events: int = 0) -> NormalizedResponse:
        error = self.error
        if error is not None:
            error_type: str | None = "stream_error"
            message: str | None = error
            reason: str | None = "error"
        else:
            error_type, message = (_INVALID, self.problem) if self.problem is not None else (None, None)
            reason = finish_reason(self.reason, bool(self.tools)) if self.done else None
        return NormalizedResponse(
            model=self.model,
            finish_reasons=[self.reason] if self.reason else [],
            finish_reason=reason,
            usage=self.usage,
            tool_calls=self.tools,
            output_text="".join(self.texts) if self.texts else None,
            completed=self.done and error is None,
            error_type=error_type,
            error_message=message,
            events=events,
            output_chars=self.chars,
            extra=self.extra,
        )


def _durations(reply: Reply) -> dict[str, ExtraValue]:
    """Ollama's timings of the final line (nanoseconds): ``ollama.load_duration_ns`` tells a cold model
    load apart from slow generation."""
    extra: dict[str, ExtraValue] = {}
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        value = getattr(reply, name)
        if value is not None:
            extra[f"ollama.{name}_ns"] = value
    return extra


def _unparsed(exc: Exception) -> NormalizedResponse:
    return NormalizedResponse(
        completed=False, error_type=_INVALID, error_message=f"the response body could not be parsed: {exc}"
    )


class ReplyJSONObserver(CapturingBody):
    """A ``/api/chat`` or ``/api/generate`` answer with ``"stream": false``."""

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(completed=False)
        try:
            reply = _decode_reply(body)
        except msgspec.DecodeError as exc:
            return _unparsed(exc)
        acc = _Accumulator(self._capture)
        acc.add(reply)
        return acc.result()


class ReplyStreamObserver(ChunkStreamObserver[Reply, _Accumulator]):
    """Reads NDJSON lines as they pass; marks token arrival for TTFT."""

    __slots__ = ("_lines",)

    _WHAT = "stream line"

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        super().__init__(exchange, _Accumulator(capture))
        self._lines = NDJSONSplitter()

    _DECODE: ClassVar[Callable[[bytes], Reply]] = _decode_reply

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._handle(self._lines.feed(chunk), now_ns)

    def flush(self) -> None:
        """Read a last line left without its newline at the end of the stream (``finish`` does it too)."""
        self._handle(self._lines.close(), 0)

    def finish(self) -> NormalizedResponse:
        self.flush()
        return self._acc.result(self._events)


class EmbedObserver(BufferedBody):
    """``/api/embed`` reports ``prompt_eval_count``; the older ``/api/embeddings`` reports nothing."""

    __slots__ = ()

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(completed=False)
        try:
            response = _decode_embed(body)
        except msgspec.DecodeError as exc:
            return _unparsed(exc)
        count = response.prompt_eval_count
        usage = Usage(input_tokens=count, total_tokens=count) if count is not None else None
        return NormalizedResponse(model=response.model, usage=usage)


class ErrorObserver(StatusBody):
    """An error response: Ollama's ``{"error": "..."}`` has a message but no type, so the type is
    ``http_<status>``."""

    def finish(self) -> NormalizedResponse:
        error_type, message = f"http_{self._status}", None
        error = error_message(self._body() or b"")
        if error is not None:
            error_type, message = error.type or error_type, error.message
        return NormalizedResponse(completed=False, finish_reason="error", error_type=error_type, error_message=message)
