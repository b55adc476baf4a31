"""Incremental newline-delimited JSON framing, correct for any split of the bytes into chunks.

https://github.com/ndjson/ndjson-spec: one JSON text per line, lines end with LF (a CR before it is
tolerated). Blank lines carry nothing and are skipped. Used for Ollama's ``application/x-ndjson``
streams; the lines are handed back undecoded, so each adapter decodes only the fields it needs.
"""

from __future__ import annotations

__all__ = ["NDJSONSplitter"]


class NDJSONSplitter:
    """Feed raw chunks; get back each complete, non-blank line (without its line ending)."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._tail += chunk
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
