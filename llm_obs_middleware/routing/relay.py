"""Relaying an upstream response to the client as it arrives: headers, chunks, stream errors, disconnects."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple, Protocol

from llm_obs_middleware.asgi.aliases import Message, Receive, Send
from llm_obs_middleware.asgi.messages import error_json, send_json
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.codecs.eventstream import FrameBoundary
from llm_obs_middleware.codecs.sse import MAX_EVENT_BYTES
from llm_obs_middleware.errors import UpstreamError, UpstreamTimeout
from llm_obs_middleware.providers.base import ProviderAdapter
from llm_obs_middleware.routing.deadline import TotalDeadline
from llm_obs_middleware.upstream.client import HOP_BY_HOP, SERVER_SET, UpstreamResponse

__all__ = ["ChunkTransform", "StreamFormat", "relay", "relay_stream", "upstream_error_body"]

_NOT_RETURNED = HOP_BY_HOP | SERVER_SET
_NOT_RETURNED_STREAMED = _NOT_RETURNED | {b"content-length"}
_EVENT_STREAM = b"application/vnd.amazon.eventstream"
# How much of a non-streamed answer waits for the rest before its status goes out (see _relay_whole).
_HOLD_BYTES = 1024 * 1024


class ChunkTransform(Protocol):
    """Rewrites a stream on its way to the client (the usage-chunk filter, a translator)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes: ...


class StreamFormat(NamedTuple):
    """The format of a stream the client receives, which says how a stream the gateway cuts reports it
    (``ProviderAdapter.stream_error``)."""

    adapter: ProviderAdapter
    content_type: bytes


async def relay(
    ex: Exchange,
    response: UpstreamResponse,
    *,
    adapter: ProviderAdapter,
    provider: str,
    hide_usage: bool,
    deadline: float,
    receive: Receive,
    send: Send,
) -> None:
    """Send ``response`` to the client unchanged (headers minus hop-by-hop), chunk by chunk: streamed
    when ``adapter`` says its content type is a stream (``hide_usage``: drop the usage chunk we asked for)."""
    status = response.status_code
    if status >= 400:
        ex.outcome = "upstream_error"
    content_type = response.headers.get("content-type", "").encode("latin-1")
    streamed = adapter.is_stream(content_type)
    skip = _NOT_RETURNED_STREAMED if streamed else _NOT_RETURNED
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
    if not streamed:
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        await _relay_whole(ex, response, provider, start, deadline, send)
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    transform = _UsageChunkFilter(ex) if hide_usage and status < 400 else None
    await relay_stream(ex, response, provider, transform, StreamFormat(adapter, content_type), deadline, receive, send)


async def _relay_whole(
    ex: Exchange, response: UpstreamResponse, provider: str, start: Message, deadline: float, send: Send
) -> None:
    """A non-streamed answer: its status goes out with its first ``_HOLD_BYTES`` (usually the whole body),
    so an answer cut short or timed out within them becomes a 502/504 JSON error rather than a broken 200."""
    held: list[bytes] = []
    size = 0
    started = False
    try:
        with TotalDeadline(None if response.body_arrived() else deadline):  # no timer when all is here
            async for chunk in response.chunks():
                if held and (started or size >= _HOLD_BYTES):
                    if not started:
                        await send(start)
                        started = True
                    await send({"type": "http.response.body", "body": b"".join(held), "more_body": True})
                    held, size = [], 0
                held.append(chunk)
                size += len(chunk)
    except (UpstreamError, TimeoutError) as exc:
        timed_out = not isinstance(exc, UpstreamError) or isinstance(exc, UpstreamTimeout)
        error_type = "upstream_timeout" if timed_out else "upstream_disconnected"
        message = f"provider {provider!r} exceeded its total timeout" if isinstance(exc, TimeoutError) else str(exc)
        ex.fail("upstream_error", error_type, message)
        if not started:
            await send_json(send, 504 if timed_out else 502, error_json(message, error_type, code=error_type))
        # Else the status went out already: the response stays unfinished, so the server closes the
        # connection and the client sees the body cut short, as it was.
        return
    if not started:
        await send(start)
    await send(
        {"type": "http.response.body", "body": held[0] if len(held) == 1 else b"".join(held), "more_body": False}
    )


async def relay_stream(
    ex: Exchange,
    response: UpstreamResponse,
    provider: str,
    transform: ChunkTransform | None,
    client: StreamFormat,
    deadline: float,
    receive: Receive,
    send: Send,
) -> None:
    """Stream the body to the client (through ``transform``), ending it cleanly on upstream errors and
    disconnects (``client``: the format the client receives)."""
    task = asyncio.current_task()
    assert task is not None
    state = {"gone": False, "done": False}
    watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task, state))
    chunk = b""
    # An event-stream exception message may only follow a whole message: track where messages end.
    frames = FrameBoundary() if client.content_type.startswith(_EVENT_STREAM) else None
    try:
        try:
            try:
                with TotalDeadline(deadline):
                    async for chunk in response.chunks():
                        if transform is not None:
                            chunk = transform.feed(chunk)
                            if not chunk:
                                continue
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        if frames is not None:
                            frames.feed(chunk)
            except TimeoutError:
                raise UpstreamTimeout(f"provider {provider!r} exceeded its total timeout", provider=provider) from None
            tail = transform.close() if transform is not None else b""
            state["done"] = True
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except UpstreamError as exc:
            error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_disconnected"
            ex.fail("upstream_error", error_type, str(exc))
            event = _final_error(client, chunk, frames, str(exc), error_type)
            state["done"] = True
            await send({"type": "http.response.body", "body": event, "more_body": False})
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        task.uncancel()
        ex.fail("client_disconnected", "client_disconnected")
    finally:
        state["done"] = True
        watcher.cancel()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any], state: dict[str, bool]) -> None:
    """Cancel the relaying ``task`` when the client disconnects before the stream is done: uvicorn
    drops sends after a disconnect silently, so the relay would otherwise read the upstream to its end."""
    while (await receive())["type"] != "http.disconnect":
        continue
    if not state["done"]:
        state["gone"] = True
        task.cancel()


def _final_error(
    client: StreamFormat,
    last: bytes,
    frames: FrameBoundary | None,
    message: str,
    error_type: str,
) -> bytes:
    """The stream's last bytes when the gateway cuts it: the status is gone already, so the failure is
    said in-band, in the shape the adapter's provider uses (``ProviderAdapter.stream_error``). A binary
    framing takes it only after a whole message; a line cut short is ended first, so the error stands on
    a line of its own (an SSE event cut mid-line becomes the error event)."""
    if frames is not None and not frames.at_boundary:
        return b""
    frame = client.adapter.stream_error(client.content_type, message, error_type)
    if frame and frames is None and last and not last.endswith((b"\n", b"\r")):
        return b"\n" + frame
    return frame


async def upstream_error_body(response: UpstreamResponse, provider: str, deadline: float, limit: int = 65536) -> bytes:
    """Read (at most ``limit`` bytes of) an error response we may pass back after other attempts failed,
    until ``deadline`` (a ``time.perf_counter()`` instant)."""
    parts: list[bytes] = []
    size = 0
    try:
        with TotalDeadline(deadline):
            async for chunk in response.chunks():
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
    except (UpstreamError, TimeoutError):
        pass  # what arrived is still the provider's answer; the attempt is failed anyway
    return b"".join(parts)[:limit]


class _UsageChunkFilter:
    """Drops the usage-only chunk we asked for (the client did not), after letting accounting see it.

    Works on byte offsets with C-level searches only: under load one read holds many events (often the
    whole stream), and splitting it into events in Python cost more than the rest of the relay.
    """

    __slots__ = ("_exchange", "_passing", "_tail")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        # Bytes of an event not ended yet: held back, so the usage event can be cut out whatever the chunking.
        self._tail = b""
        # Inside an event too large to be the usage chunk (past MAX_EVENT_BYTES): it goes through as it
        # arrives, up to its end, so an upstream that never ends an event cannot grow our memory.
        self._passing = False

    def feed(self, chunk: bytes) -> bytes:
        if self._passing:
            ends = [found + len(t) for t in _EVENT_ENDS if (found := chunk.find(t)) >= 0]
            if not ends:
                return chunk
            self._passing = False
            return chunk[: min(ends)] + self.feed(chunk[min(ends) :])
        buf = self._tail + chunk if self._tail else chunk
        end = _last_event_end(buf, 0, len(buf))
        self._tail = buf[end:]
        if len(self._tail) > MAX_EVENT_BYTES:
            self._tail, self._passing = b"", True
            return self._filter(buf[:end]) + buf[end:]
        return self._filter(buf if end == len(buf) else buf[:end])

    def _filter(self, whole: bytes) -> bytes:
        """``whole`` (whole events only) without the usage-only event."""
        # Every chunk carries "usage":null once usage is asked for; only the usage chunk has no choices.
        if b'"choices":[]' not in whole:
            return whole
        kept = []
        start = 0
        while (marker := whole.find(b'"choices":[]', start)) >= 0:
            begin = _last_event_end(whole, start, marker)
            stop = _next_event_end(whole, marker)
            if b'"usage"' in whole[begin:stop]:
                self._exchange.feed_unseen(whole[begin:stop], time.perf_counter_ns())
                kept.append(whole[start:begin])
            else:  # e.g. Azure's prompt-filter chunk: no choices, no usage
                kept.append(whole[start:stop])
            start = stop
        kept.append(whole[start:])
        return b"".join(kept)

    def close(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")  # what ends an SSE event (a blank line)


def _last_event_end(buf: bytes, start: int, stop: int) -> int:
    """Where the last event ending within ``buf[start:stop]`` ends (``start``: none does)."""
    end = start
    for terminator in _EVENT_ENDS if b"\r" in buf else _EVENT_ENDS[:1]:
        found = buf.rfind(terminator, start, stop)
        if found >= 0:
            end = max(end, found + len(terminator))
    return end


def _next_event_end(buf: bytes, start: int) -> int:
    """Where the first event ending after ``start`` ends (``len(buf)`` when none does)."""
    ends = [found + len(t) for t in _EVENT_ENDS if (found := buf.find(t, start)) >= 0]
    return min(ends) if ends else len(buf)
