"""Incremental Server-Sent Events parsing, correct for any split of the bytes into chunks.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
Lines end with CRLF, LF or CR; an empty line dispatches the event; ``data`` lines are joined with LF.
"""

from __future__ import annotations

__all__ = ["SSEParser"]


class SSEParser:
    """Feed raw chunks; get back ``(event, data)`` for each complete event (``event`` is ``b""`` if unnamed)."""

    __slots__ = ("_data", "_event", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        # The usual read: exactly one whole one-line ``data:`` event, nothing held back. C-level checks
        # only, about half the cost of the general path below (which gives the same result).
        if (
            not self._tail
            and not self._data
            and chunk.startswith(b"data: ")
            and chunk.endswith(b"\n\n")
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            event, self._event = self._event, b""
            return [(event, chunk[6:-2])]
        buf = self._tail + chunk if self._tail else chunk
        # A CR at the very end may be the first half of a CRLF split across chunks: keep it back.
        if buf.endswith(b"\r"):
            buf, self._tail = buf[:-1], b"\r"
        else:
            self._tail = b""
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n")
        if end < 0:
            self._tail = buf + self._tail
            return []
        self._tail = buf[end + 1 :] + self._tail
        events: list[tuple[bytes, bytes]] = []
        data = self._data
        for line in buf[:end].split(b"\n"):
            if not line:
                if data:
                    events.append((self._event, b"\n".join(data)))
                    data.clear()
                self._event = b""
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                self._event = line[7:] if line[6:7] == b" " else line[6:]
            # id:, retry: and comments carry nothing we record.
        return events

    def close(self) -> list[tuple[bytes, bytes]]:
        """Dispatch an event left unterminated at end of stream (lenient, like most SDKs)."""
        events = self.feed(b"\n\n") if (self._data or self._tail.strip()) else []
        self._tail = b""
        return events
