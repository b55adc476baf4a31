"""Incremental newline-delimited JSON framing, correct for any split of the bytes into chunks.

https://github.com/ndjson/ndjson-spec: one JSON text per line, lines end with LF (a CR before it is
tolerated). Blank lines carry nothing and are skipped. Used for Ollama's ``application/x-ndjson``
streams; the lines are handed back undecoded, so each adapter decodes only the fields it needs. A line
growing past ``MAX_EVENT_BYTES`` is dropped, so a stream that never ends a line cannot grow memory.
"""

from __future__ import annotations

from llm_obs_middleware.codecs.sse import MAX_EVENT_BYTES

__all__ = ["NDJSONSplitter"]


class NDJSONSplitter:
    """Feed raw chunks; get back each complete, non-blank line (without its line ending)."""

    __slots__ = ("_dropping", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._dropping = False  # inside a line past MAX_EVENT_BYTES: skip it up to its end

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._dropping:
            end = chunk.find(b"\n")
            if end < 0:
                return []
            self._dropping = False
            chunk = chunk[end + 1 :]
        if b"\n" not in chunk:
            self._tail += chunk
            if len(self._tail) > MAX_EVENT_BYTES:
                self._tail = b""
                self._dropping = True
            return []
        buf = self._tail + chunk if self._tail else chunk
        end = buf.rfind(b"\n")
        self._tail = buf[end + 1 :]
        return [line for line in _strip_cr(buf[:end].split(b"\n")) if line.strip()]

    def close(self) -> list[bytes]:
        """The last line when the stream did not end with a newline (lenient, like the SDKs)."""
        tail, self._tail = self._tail, b""
        return [line] if (line := tail.removesuffix(b"\r")).strip() else []


def _strip_cr(lines: list[bytes]) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]
