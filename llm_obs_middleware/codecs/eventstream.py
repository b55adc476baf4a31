"""Incremental AWS event-stream decoding (``application/vnd.amazon.eventstream``), CRCs checked.

Correct for any split of the bytes into chunks. Each message (all integers big-endian)::

    total_length uint32 | headers_length uint32 | prelude_crc uint32 (CRC32 of the first 8 bytes)
    headers: name_len uint8, name, value_type uint8, value ... | payload | message_crc uint32
    (CRC32 of everything before it)

https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream
(the framing Bedrock's ConverseStream uses too). A bad CRC or an impossible length means the rest of
the stream cannot be framed: the decoder stops there and says why in :attr:`EventStreamDecoder.error`.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

__all__ = [
    "MAX_MESSAGE_BYTES",
    "EventStreamDecoder",
    "EventStreamMessage",
    "FrameBoundary",
    "HeaderValue",
    "encode_message",
]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The largest message the framing allows (16 MiB, headers at most 128 KiB)."""
_MAX_HEADERS_BYTES = 128 * 1024
_PRELUDE = 12
_OVERHEAD = 16  # prelude and message CRC
_prelude = struct.Struct(">III")
_u16 = struct.Struct(">H")
_CRC = struct.Struct(">I")
# value_type -> fixed value size (bool true/false carry no bytes); 6 (bytes) and 7 (string) are sized.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}

HeaderValue = bool | int | bytes | str
"""A header value: booleans, integers (byte/short/int/long and timestamps in ms), bytes (byte arrays
and UUIDs) or strings."""


class EventStreamMessage(NamedTuple):
    """One decoded message: its headers (``:event-type``, ``:message-type``...) and raw payload."""

    headers: dict[str, HeaderValue]
    payload: bytes


class EventStreamDecoder:
    """Feed raw chunks; get back each complete message once its last byte (and CRCs) arrived.

    After a framing error every later byte is ignored: :attr:`error` says what went wrong and
    where. :meth:`close` notes a message left incomplete at the end of the stream.
    """

    __slots__ = ("_buf", "_offset", "error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0], for error messages
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        if self.error is not None:
            return []
        buf = self._buf
        buf += chunk
        messages: list[EventStreamMessage] = []
        pos, size = 0, len(buf)
        view = memoryview(buf)
        try:
            while size - pos >= _PRELUDE:
                total, headers_length, prelude_crc = _prelude.unpack_from(buf, pos)
                if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
                    self._fail(pos, "prelude CRC mismatch")
                    return messages
                if not _OVERHEAD + headers_length <= total <= MAX_MESSAGE_BYTES or headers_length > _MAX_HEADERS_BYTES:
                    self._fail(pos, f"impossible lengths (total {total}, headers {headers_length})")
                    return messages
                end = pos + total
                if end > size:
                    break
                if zlib.crc32(view[pos : end - 4]) != _CRC.unpack_from(buf, end - 4)[0]:
                    self._fail(pos, "message CRC mismatch")
                    return messages
                start = pos + _PRELUDE
                headers = _headers(buf, start, start + headers_length)
                if headers is None:
                    self._fail(pos, "malformed headers")
                    return messages
                messages.append(EventStreamMessage(headers, bytes(view[start + headers_length : end - 4])))
                pos = end
        finally:
            view.release()
        if pos:
            del buf[:pos]
            self._offset += pos
        return messages

    def close(self) -> None:
        """End of stream: bytes of an incomplete message left over are a framing error."""
        if self.error is None and self._buf:
            self._fail(0, f"stream ended inside a message ({len(self._buf)} bytes left)")

    def _fail(self, pos: int, reason: str) -> None:
        self.error = f"{reason} at byte {self._offset + pos}"
        self._buf = bytearray()


class FrameBoundary:
    """Whether the bytes fed so far end exactly at a message boundary, where a message of our own may
    follow. Reads only each message's length prefix (no CRCs, no copies): cheap per chunk."""

    __slots__ = ("_head", "_left", "broken")

    def __init__(self) -> None:
        self._left = 0  # bytes still to come of the current message (after its length prefix)
        self._head = b""  # a length prefix split across chunks
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        pos, size = 0, len(chunk)
        while pos < size and not self.broken:
            if self._left:
                taken = min(self._left, size - pos)
                self._left -= taken
                pos += taken
                continue
            piece = chunk[pos : pos + 4 - len(self._head)]
            pos += len(piece)
            self._head += piece
            if len(self._head) == 4:
                total = int.from_bytes(self._head, "big")
                self._head = b""
                self.broken = not _OVERHEAD <= total <= MAX_MESSAGE_BYTES
                self._left = total - 4

    @property
    def at_boundary(self) -> bool:
        return not (self._left or self._head or self.broken)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (value type 7) and valid CRCs."""
    parts = []
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        parts += [bytes([len(name_bytes)]), name_bytes, b"\x07", _u16.pack(len(value_bytes)), value_bytes]
    block = b"".join(parts)
    prelude = struct.pack(">II", _OVERHEAD + len(block) + len(payload), len(block))
    message = prelude + _CRC.pack(zlib.crc32(prelude)) + block + payload
    return message + _CRC.pack(zlib.crc32(message))


def _headers(buf: bytearray, pos: int, end: int) -> dict[str, HeaderValue] | None:
    """Decode a header block; ``None`` when it does not parse exactly up to ``end``."""
    headers: dict[str, HeaderValue] = {}
    try:
        while pos < end:
            name_length = buf[pos]
            name = buf[pos + 1 : pos + 1 + name_length].decode()
            pos += 1 + name_length
            kind = buf[pos]
            pos += 1
            value: HeaderValue
            if kind == 7 or kind == 6:
                (length,) = _u16.unpack_from(buf, pos)
                raw = bytes(buf[pos + 2 : pos + 2 + length])
                pos += 2 + length
                value = raw.decode() if kind == 7 else raw
            elif kind in _FIXED:
                width = _FIXED[kind]
                raw = bytes(buf[pos : pos + width])
                pos += width
                if kind <= 1:
                    value = kind == 0
                elif kind == 9:
                    value = raw
                else:
                    value = int.from_bytes(raw, "big", signed=True)
            else:
                return None
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return headers if pos == end else None
