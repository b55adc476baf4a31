"""The incremental AWS event-stream decoder, checked against the fixtures' reference codec.

The reference (``shared/fixtures/providers/bedrock_converse/eventstream_codec.py``) was validated
with botocore's own parser; frames with header types it does not write are built by hand here.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
import zlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.codecs.eventstream import MAX_MESSAGE_BYTES, EventStreamDecoder, EventStreamMessage

from ._fixture_paths import PROVIDER_FIXTURES

FIXTURE = PROVIDER_FIXTURES / "bedrock_converse"


def reference_codec() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eventstream_codec", FIXTURE / "eventstream_codec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CODEC = reference_codec()


def raw_frame(header_block: bytes, payload: bytes) -> bytes:
    """A frame around an already encoded header block (for header types the reference cannot write)."""
    prelude = struct.pack(">II", 16 + len(header_block) + len(payload), len(header_block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + header_block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def header(name: str, kind: int, value: bytes) -> bytes:
    return struct.pack(">B", len(name)) + name.encode() + bytes([kind]) + value


ALL_TYPES = b"".join(
    [
        header("t", 0, b""),
        header("f", 1, b""),
        header("byte", 2, struct.pack(">b", -2)),
        header("short", 3, struct.pack(">h", -300)),
        header("int", 4, struct.pack(">i", 70_000)),
        header("long", 5, struct.pack(">q", -(2**40))),
        header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
        header("string", 7, struct.pack(">H", 5) + "héllo".encode()[:5]),
        header("timestamp", 8, struct.pack(">q", 1_700_000_000_000)),
        header("uuid", 9, bytes(range(16))),
    ]
)


def decode_all(chunks: list[bytes]) -> tuple[list[EventStreamMessage], str | None]:
    decoder = EventStreamDecoder()
    messages = [message for chunk in chunks for message in decoder.feed(chunk)]
    decoder.close()
    return messages, decoder.error


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


@pytest.mark.parametrize("name", ["stream.bin", "variants/stream_exception.bin"])
def test_fixture_streams_decode_like_the_reference(name: str) -> None:
    data = (FIXTURE / name).read_bytes()
    reference = [(headers, bytes(payload)) for headers, payload in CODEC.decode_frames(data)]
    messages, error = decode_all([data])
    assert error is None
    assert [(m.headers, m.payload) for m in messages] == reference
    assert len(messages) == {"stream.bin": 12, "variants/stream_exception.bin": 3}[name]


def test_every_header_value_type() -> None:
    [message], error = decode_all([raw_frame(ALL_TYPES, b"{}")])
    assert error is None
    assert message.payload == b"{}"
    assert message.headers == {
        "t": True,
        "f": False,
        "byte": -2,
        "short": -300,
        "int": 70_000,
        "long": -(2**40),
        "bytes": b"\x00\x01\x02",
        "string": "héll",
        "timestamp": 1_700_000_000_000,
        "uuid": bytes(range(16)),
    }


def test_empty_message_is_sixteen_bytes() -> None:
    data = raw_frame(b"", b"")
    assert len(data) == 16
    assert decode_all([data]) == ([EventStreamMessage({}, b"")], None)


STREAM = (
    (FIXTURE / "stream.bin").read_bytes()
    + raw_frame(ALL_TYPES, b"x" * 300)
    + CODEC.encode_frame({":message-type": "event"}, b"")
)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=60))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    whole = decode_all([STREAM])
    assert whole[1] is None and len(whole[0]) == 14
    assert decode_all(split(STREAM, cuts)) == whole


def test_byte_by_byte() -> None:
    assert decode_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == decode_all([STREAM])


def test_message_is_returned_with_its_last_byte() -> None:
    first = CODEC.encode_frame({":event-type": "a"}, b"{}")
    decoder = EventStreamDecoder()
    assert decoder.feed(first[:-1]) == []
    assert decoder.feed(first[-1:]) == [EventStreamMessage({":event-type": "a"}, b"{}")]


def _corrupt(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


FRAMES = [CODEC.encode_frame({":event-type": f"e{i}"}, b'{"i":%d}' % i) for i in range(3)]


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (2, "prelude CRC mismatch"),  # total length byte
        (9, "prelude CRC mismatch"),  # the prelude CRC itself
        (14, "message CRC mismatch"),  # a header byte
        (-6, "message CRC mismatch"),  # a payload byte
        (-1, "message CRC mismatch"),  # the message CRC itself
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
def test_bad_crc_stops_parsing_and_says_where(where: int, reason: str, chunked: bool) -> None:
    bad = _corrupt(FRAMES[1], where % len(FRAMES[1]))
    data = FRAMES[0] + bad + FRAMES[2]
    messages, error = decode_all(split(data, [5, 40, 41, 77]) if chunked else [data])
    assert [m.headers[":event-type"] for m in messages] == ["e0"]
    assert error == f"{reason} at byte {len(FRAMES[0])}"


def test_nothing_is_decoded_after_an_error() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(_corrupt(FRAMES[0], 20)) == []
    assert decoder.error is not None
    error = decoder.error
    assert decoder.feed(FRAMES[1]) == []
    decoder.close()
    assert decoder.error == error


def _with_prelude(total: int, headers_length: int) -> bytes:
    prelude = struct.pack(">II", total, headers_length)
    return prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\0" * 8


@pytest.mark.parametrize(
    ("total", "headers_length"),
    [(15, 0), (20, 5), (MAX_MESSAGE_BYTES + 1, 0), (200 * 1024, 129 * 1024)],
)
def test_impossible_lengths_are_framing_errors(total: int, headers_length: int) -> None:
    _, error = decode_all([FRAMES[0] + _with_prelude(total, headers_length)])
    assert error == f"impossible lengths (total {total}, headers {headers_length}) at byte {len(FRAMES[0])}"


@pytest.mark.parametrize(
    "block",
    [
        header("x", 10, b"\0"),  # unknown value type
        header("x", 7, struct.pack(">H", 50) + b"short"),  # string longer than the header block
        header("x", 4, b"\0\0"),  # int cut short by the end of the block
        b"\x05ab",  # name longer than the block
        header("x", 7, struct.pack(">H", 2) + b"\xff\xfe"),  # not UTF-8
    ],
)
def test_malformed_headers(block: bytes) -> None:
    messages, error = decode_all([FRAMES[0] + raw_frame(block, b"{}")])
    assert len(messages) == 1
    assert error == f"malformed headers at byte {len(FRAMES[0])}"


@pytest.mark.parametrize("cut", [1, 11, 12, 30, -1])
def test_stream_ending_inside_a_message(cut: int) -> None:
    partial = FRAMES[1][:cut]
    messages, error = decode_all([FRAMES[0], partial])
    assert len(messages) == 1
    assert error == f"stream ended inside a message ({len(partial)} bytes left) at byte {len(FRAMES[0])}"


def test_reference_accepts_what_we_accept() -> None:
    """Sanity check of the test's own frame builder: the reference codec decodes its string headers."""
    data = raw_frame(header("name", 7, struct.pack(">H", 1) + b"v"), b"payload")
    decoded: list[Any] = list(CODEC.decode_frames(data))
    assert decoded == [({"name": "v"}, b"payload")]
    assert decode_all([data]) == ([EventStreamMessage({"name": "v"}, b"payload")], None)
