"""Response side of the fake provider, shared by the OpenAI mode and every ``_fake_<format>.py`` mode:
the failures a request can ask for, a JSON answer, and a stream sent with its timing and its cut."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Send
    from llm_obs_middleware.testing._requests import Overrides

__all__ = [
    "FakeStreamAborted",
    "decode_raw_list",
    "named_event",
    "send_json",
    "send_stream",
    "uuid_id",
]

_encode = msgspec.json.Encoder().encode
Header = tuple[bytes, bytes]


class FakeStreamAborted(Exception):
    """Raised by the app after ``x-fake-drop-after`` events so the server aborts the connection."""


def decode_raw_list(decode: Callable[[bytes], list[Any]], items: Iterable[msgspec.Raw]) -> list[Any]:
    """Raw JSON values (a request's ``tools``, kept as the client's bytes) decoded as one list."""
    return decode(b"[" + b",".join(bytes(item) for item in items) + b"]")


def uuid_id(request_id: bytes) -> str:
    """A UUID-shaped id (Cohere's, AWS's request ids) made from the fake's hex request counter."""
    hex_id = request_id.decode().rjust(32, "0")[-32:]
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def named_event(data: dict[str, Any]) -> bytes:
    """One SSE event named by its payload's ``type`` (Anthropic's and Cohere's streams)."""
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"


async def send_json(send: Send, status: int, body: bytes, content_type: Header, *extra: Header) -> None:
    """A whole answer: ``content_type``, its length, then ``extra`` headers."""
    headers = [content_type, (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_stream(
    send: Send,
    headers: list[Header],
    events: Sequence[bytes],
    o: Overrides,
    *,
    first: int = 0,
    count: int | None = None,
    unit: str = "events",
) -> None:
    """Send a stream: the events before ``first`` go out with the headers, the TTFT delay comes before
    event ``first``, the chunk interval between the ``count`` token events from there (all the rest
    when ``None``), and the connection is aborted after ``drop_after`` events.

    Raises:
        FakeStreamAborted: after ``o.drop_after`` events (the server then drops the connection).
    """
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    end = len(events) if count is None else first + count
    last = len(events) - 1
    for index, event in enumerate(events):
        if index == o.drop_after:
            raise FakeStreamAborted(f"x-fake-drop-after: stream cut after {index} {unit}")
        delay = o.ttft_s if index == first else o.interval_s if first < index < end else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": event, "more_body": index < last})
