"""Relaying an upstream response to the client as it arrives: headers, chunks, stream errors, disconnects."""

from __future__ import annotations

import asyncio
import time

import httpx

from .._asgi import error_json
from .._sse import SSEEventSplitter
from ..errors import UpstreamError, UpstreamTimeout
from ..state import Exchange
from ..types import Receive, Send
from ..upstream import HOP_BY_HOP, iter_body

__all__ = ["relay", "upstream_error_body"]

_NOT_RETURNED = HOP_BY_HOP | {b"content-length"}


async def relay(
    ex: Exchange,
    response: httpx.Response,
    *,
    provider: str,
    streamed: bool,
    hide_usage: bool,
    deadline: float,
    receive: Receive,
    send: Send,
) -> None:
    """Send ``response`` to the client unchanged (headers minus hop-by-hop), chunk by chunk."""
    status = response.status_code
    if status >= 400:
        ex.outcome = "upstream_error"
    skip = _NOT_RETURNED if streamed else HOP_BY_HOP
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if not streamed:
        async for chunk in iter_body(response, provider=provider):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    sse = response.headers.get("content-type", "").startswith("text/event-stream")
    await _relay_stream(ex, response, provider, hide_usage and status < 400, sse, deadline, receive, send)


async def _relay_stream(
    ex: Exchange,
    response: httpx.Response,
    provider: str,
    hide_usage: bool,
    sse: bool,
    deadline: float,
    receive: Receive,
    send: Send,
) -> None:
    # uvicorn drops sends after a disconnect silently, so watch receive() and cancel ourselves.
    task = asyncio.current_task()
    assert task is not None
    state = {"gone": False, "done": False}

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            continue
        if not state["done"]:
            state["gone"] = True
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch_disconnect())
    splitter = _UsageChunkFilter(ex) if hide_usage else None
    try:
        try:
            async for chunk in iter_body(response, provider=provider):
                if splitter is not None:
                    chunk = splitter.feed(chunk)
                    if not chunk:
                        continue
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if time.perf_counter() > deadline:
                    raise UpstreamTimeout(f"provider {provider!r} exceeded its total timeout", provider=provider)
            tail = splitter.close() if splitter is not None else b""
            state["done"] = True
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except UpstreamError as exc:
            error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_disconnected"
            ex.fail("upstream_error", error_type, str(exc))
            # The status is gone already: on SSE tell the client in-band, the way OpenAI reports stream
            # errors; other framings just end (their clients see a stream without its last event).
            event = b"data: " + error_json(str(exc), error_type, code=error_type) + b"\n\n" if sse else b""
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


async def upstream_error_body(response: httpx.Response, provider: str, limit: int = 65536) -> bytes:
    """Read (at most ``limit`` bytes of) an error response we may pass back after other attempts failed."""
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in iter_body(response, provider=provider):
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except UpstreamError:
        parts.append(b"")  # what arrived is still the provider's answer; the attempt is failed anyway
    return b"".join(parts)[:limit]


class _UsageChunkFilter:
    """Drops the usage-only chunk we asked for (the client did not), after letting accounting see it."""

    __slots__ = ("_exchange", "_splitter")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        # Forward whole events only, so the usage event can be cut out whatever the chunking.
        self._splitter = SSEEventSplitter()

    def feed(self, chunk: bytes) -> bytes:
        events = self._splitter.feed(chunk)
        kept = []
        for event in events:
            if b'"choices":[]' in event and b'"usage"' in event:
                observer = self._exchange.observer
                if observer is not None:
                    observer.feed(event, time.perf_counter_ns())
            else:
                kept.append(event)
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def close(self) -> bytes:
        return self._splitter.close()
