"""Incremental Server-Sent Events parsing, correct for any split of the bytes into chunks.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
Lines end with CRLF, LF or CR; an empty line dispatches the event; ``data`` lines are joined with LF.
Memory is bounded: an event (or a line) growing past ``MAX_EVENT_BYTES`` is dropped up to its end, so an
upstream that never ends an event cannot make the parser hold it all.
"""

from __future__ import annotations

__all__ = ["MAX_EVENT_BYTES", "SSEParser"]

MAX_EVENT_BYTES = 8 * 1024 * 1024
"""The largest event kept; the same bound as a non-streamed body's (``providers._buffered.MAX_BUFFERED``)."""


class SSEParser:
    """Feed raw chunks; get back ``(event, data)`` for each complete event (``event`` is ``b""`` if unnamed)."""

    __slots__ = ("_data", "_dropping", "_event", "_size", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._event = b""
        self._data: list[bytes] = []
        self._size = 0  # bytes in _data
        self._dropping = False  # inside an event past MAX_EVENT_BYTES: skip its lines up to the blank one

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
        if end < 0:  # no line ends yet: hold it all
            self._tail = buf + self._tail
            events: list[tuple[bytes, bytes]] = []
        else:
            self._tail = buf[end + 1 :] + self._tail
            events = self._interpret(buf[:end])
        if len(self._tail) > MAX_EVENT_BYTES:
            self._drop()
        return events

    def _interpret(self, lines: bytes) -> list[tuple[bytes, bytes]]:
        """Apply each line to the event being read; return the events the blank lines dispatched."""
        events: list[tuple[bytes, bytes]] = []
        data = self._data
        for line in lines.split(b"\n"):
            if not line:
                if data and not self._dropping:
                    events.append((self._event, b"\n".join(data)))
                data.clear()
                self._size = 0
                self._dropping = False
                self._event = b""
            elif self._dropping:
                continue
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                self._size += len(line)
                if self._size > MAX_EVENT_BYTES:
                    self._drop()
            elif line.startswith(b"event:"):
                self._event = line[7:] if line[6:7] == b" " else line[6:]
            # id:, retry: and comments carry nothing we record.
        return events

    def _drop(self) -> None:
        """Forget the event being read: it is too large to keep (the rest of it is skipped as it arrives)."""
        self._data.clear()
        self._size = 0
        self._tail = b""
        self._dropping = True

    def close(self) -> list[tuple[bytes, bytes]]:
        """Dispatch an event left unterminated at end of stream (lenient, like most SDKs)."""
        events = self.feed(b"\n\n") if (self._data or self._tail.strip()) else []
        self._tail = b""
        return events
