"""The buffered-body base every adapter's non-streamed observers share."""

from __future__ import annotations

import msgspec

from ..schema import NormalizedResponse

__all__ = ["MAX_BUFFERED", "BufferedBody"]

MAX_BUFFERED = 8 * 1024 * 1024  # a non-streamed body larger than this is not parsed (forwarded all the same)


class BufferedBody:
    """Keeps a copy of a non-streamed body (forwarded unchanged meanwhile) to decode at the end.

    Subclasses implement ``_result`` (decode the whole body) or override ``finish`` altogether.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._size += len(chunk)
        if self._size <= MAX_BUFFERED:
            self._parts.append(chunk)

    def _body(self) -> bytes | None:
        if self._size > MAX_BUFFERED:
            return None
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
