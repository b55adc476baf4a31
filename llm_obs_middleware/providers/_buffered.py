"""The buffered-body base every adapter's non-streamed observers share."""

from __future__ import annotations

import json
import re

import msgspec

from llm_obs_middleware.records.schema import NormalizedResponse

__all__ = ["MAX_BUFFERED", "BufferedBody"]

MAX_BUFFERED = 8 * 1024 * 1024
"""A non-streamed body up to this size is kept whole; past it only its head and tail (see ``_salvage``)."""
_KEPT = 64 * 1024  # bytes of head and of tail kept of a larger body
# The top-level fields a record needs (every adapter's usage, model, id and finish reason), as JSON keys.
# A quote inside a JSON string is escaped, so an unescaped ``"key":`` is a key, never content.
_RECORD_KEYS = re.compile(
    r'(?<!\\)"(usage|usageMetadata|meta|model|modelVersion|id|responseId|object|status|stop_reason|stopReason'
    r'|finish_reason|done_reason|done|prompt_eval_count|eval_count|metrics)"\s*:\s*'
)
_raw_decode = json.JSONDecoder().raw_decode


class BufferedBody:
    """Keeps a copy of a non-streamed body (forwarded unchanged meanwhile) to decode at the end.

    Memory is bounded: past ``MAX_BUFFERED`` only the first and last 64 KB are kept, and the end decodes
    the record's fields found there (usage comes last in every provider's answer), not the content.
    Subclasses implement ``_result`` (decode the whole body) or override ``finish`` altogether.
    """

    __slots__ = ("_head", "_parts", "_size", "_tail")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._head = b""
        self._tail = b""

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._size += len(chunk)
        if self._size <= MAX_BUFFERED:
            self._parts.append(chunk)
        elif self._parts:  # just grew past the bound: from now on, only the head and the tail
            body = b"".join(self._parts) + chunk
            self._parts = []
            self._head, self._tail = body[:_KEPT], body[-_KEPT:]
        else:
            self._tail = (self._tail + chunk)[-_KEPT:]

    def _body(self) -> bytes | None:
        if self._size > MAX_BUFFERED:
            return _salvage(self._head, self._tail)
        return self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(completed=False)
        try:
            return self._result(body)
        except msgspec.DecodeError:
            return NormalizedResponse(completed=False, error_type="invalid_response")

    def _result(self, body: bytes) -> NormalizedResponse:
        """Decode the whole body (raising ``msgspec.DecodeError`` when it is not what we expect)."""
        raise NotImplementedError


def _salvage(head: bytes, tail: bytes) -> bytes | None:
    """A JSON object of the record's fields found in a large body's head (first occurrence: the top-level
    fields a body opens with) or else its tail (last occurrence: the usage a body ends with)."""
    found = _record_fields(head, first=True)
    for key, value in _record_fields(tail, first=False).items():
        found.setdefault(key, value)
    return msgspec.json.encode(found) if found else None


def _record_fields(part: bytes, *, first: bool) -> dict[str, object]:
    text = part.decode("utf-8", "replace")
    fields: dict[str, object] = {}
    for match in _RECORD_KEYS.finditer(text):
        key = match.group(1)
        if first and key in fields:
            continue
        try:
            fields[key], _ = _raw_decode(text, match.end())
        except (ValueError, RecursionError):  # cut off by the head's end, or not a value at all
            continue
    return fields
