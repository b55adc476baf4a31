"""A misbehaving upstream: a loopback HTTP server that breaks HTTP on purpose, for adversarial tests.

It speaks HTTP/1.1 over raw asyncio sockets (not an ASGI server, which would refuse to break framing),
in a background thread like :class:`~llm_obs_middleware.testing.FakeProviderServer`, and answers every
``POST``/``GET`` as an OpenAI chat completions endpoint would, then misbehaves as the request's mode says.
The mode is the ``x-misbehave`` request header (a gateway forwards client headers), else :attr:`mode`:

=============== =========================================================================================
``normal``      a well-formed OpenAI chat completion; a stream (chunked SSE, usage chunk when
                ``stream_options.include_usage``) when the body says ``"stream": true``
``bad-status``  the normal answer under status :attr:`bad_status` (999: outside 100-599)
``short-body``  a non-streamed answer whose ``Content-Length`` promises 100 bytes more than sent, then close
``trickle``     SSE headers and the start of an event, then :attr:`trickle_chunk` every
                :attr:`trickle_interval_s`, forever: the event never ends (and no chunk completes one)
``hang``        reads the request, then never answers (no status line) until the client leaves
``reset``       starts a stream (headers and one event), then resets the connection (TCP RST)
``gzip``        the normal answer (stream or not) gzip-encoded, whatever ``accept-encoding`` said
``huge``        a non-streamed answer of :attr:`huge_bytes` (over 8 MB of content) with usage at the end
=============== =========================================================================================

Every answer's usage is :attr:`PROMPT_TOKENS` in, :attr:`COMPLETION_TOKENS` out (numbers no estimate
produces), so a test can tell reported usage from an estimate. Each connection serves one request and
closes. :attr:`requests` lists what arrived; :meth:`wait_closed` waits until the client (the gateway)
has dropped a given number of connections, e.g. after a deadline cut a trickle::

    with MisbehavingServer(mode="trickle") as upstream:
        ...  # a gateway with base_url=upstream.url
        assert upstream.wait_closed(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import threading
import zlib
from enum import StrEnum
from types import TracebackType
from typing import Any, NamedTuple, Self

import msgspec

__all__ = ["MisbehavingRequest", "MisbehavingServer", "Misbehaviour"]


class Misbehaviour(StrEnum):
    """What the server does with a request (the ``x-misbehave`` header's values)."""

    NORMAL = "normal"
    BAD_STATUS = "bad-status"
    SHORT_BODY = "short-body"
    TRICKLE = "trickle"
    HANG = "hang"
    RESET = "reset"
    GZIP = "gzip"
    HUGE = "huge"


class MisbehavingRequest(NamedTuple):
    """One request as received: the method, target (path and query), headers (lower-cased) and body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class _Chat(msgspec.Struct):
    model: str = "gpt-4o-mini"
    stream: bool = False
    stream_options: dict[str, Any] | None = None


_MAX_HEAD = 64 * 1024
_CONTENT = "Hello from the misbehaving upstream."


class MisbehavingServer:
    """A loopback HTTP/1.1 server that misbehaves per request (see the module docstring for the modes).

    Args:
        mode: the default mode, for requests without an ``x-misbehave`` header (can be changed later).
        host: interface to bind.
        port: port to bind; ``0`` picks a free one.
    """

    PROMPT_TOKENS = 1234
    COMPLETION_TOKENS = 567

    def __init__(self, mode: Misbehaviour | str = Misbehaviour.NORMAL, *, host: str = "127.0.0.1", port: int = 0):
        self.mode = Misbehaviour(mode)
        self.host = host
        self.port = port
        self.bad_status = 999
        self.trickle_chunk = b"x"
        self.trickle_interval_s = 0.01
        self.huge_bytes = 9 * 1024 * 1024
        self.requests: list[MisbehavingRequest] = []
        self._closed = 0
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return self.base_url + "/v1"

    @property
    def closed_connections(self) -> int:
        """Connections whose handling ended (the server or the client closed them)."""
        with self._changed:
            return self._closed

    def wait_closed(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` connections ended; ``False`` if that did not happen within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._closed >= count, timeout)

    def wait_requests(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` requests arrived; ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"misbehaving:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"misbehaving server on {self.base_url} failed to start")
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, sock: socket.socket) -> None:
        asyncio.run(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._handle(reader, writer)
                # close() sends what is still buffered first; the abort() below would drop it (up to the
                # write buffer's high-water mark: a big answer arrived cut short on a loaded machine).
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass  # the client went away, or sent something we do not parse: just close
            finally:
                handlers.discard(task)
                writer.transport.abort()
                with self._changed:
                    self._closed += 1
                    self._changed.notify_all()

        server = await asyncio.start_server(on_connection, sock=sock, limit=_MAX_HEAD)
        self._ready.set()
        async with server:
            await self._stopping.wait()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        with self._changed:
            self.requests.append(MisbehavingRequest(method, target, headers, body))
            self._changed.notify_all()
        mode = Misbehaviour(headers.get("x-misbehave", self.mode))
        try:
            chat = msgspec.json.decode(body, type=_Chat) if body else _Chat()
        except msgspec.DecodeError:
            chat = _Chat()
        include_usage = bool(chat.stream_options and chat.stream_options.get("include_usage"))
        match mode:
            case Misbehaviour.NORMAL | Misbehaviour.BAD_STATUS:
                status = self.bad_status if mode is Misbehaviour.BAD_STATUS else 200
                if chat.stream:
                    await _send_stream(writer, status, _stream_events(chat.model, include_usage))
                else:
                    await _send_plain(writer, status, _chat_body(chat.model))
            case Misbehaviour.SHORT_BODY:
                body = _chat_body(chat.model)
                writer.write(_head(200, "application/json", [("content-length", str(len(body) + 100))]) + body)
                await writer.drain()
            case Misbehaviour.TRICKLE:
                await _send_trickle(reader, writer, chat.model, self.trickle_chunk, self.trickle_interval_s)
            case Misbehaviour.HANG:
                await reader.read()  # until the client closes
            case Misbehaviour.RESET:
                events = _stream_events(chat.model, include_usage)
                writer.write(_head(200, "text/event-stream", [("transfer-encoding", "chunked")]) + _chunk(events[0]))
                await writer.drain()
                await asyncio.sleep(0.01)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            case Misbehaviour.GZIP:
                await _send_gzip(writer, chat, include_usage)
            case Misbehaviour.HUGE:
                await _send_plain(writer, 200, _chat_body(chat.model, "a" * self.huge_bytes))


def _head(status: int, content_type: str, extra: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Misbehaving", f"content-type: {content_type}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _usage() -> dict[str, int]:
    prompt, completion = MisbehavingServer.PROMPT_TOKENS, MisbehavingServer.COMPLETION_TOKENS
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat_body(model: str, content: str = _CONTENT) -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-misbehaving",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": _usage(),  # last, as OpenAI sends it
        }
    )


def _stream_events(model: str, include_usage: bool) -> list[bytes]:
    def event(choices: list[Any], usage: dict[str, int] | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-misbehaving",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + msgspec.json.encode(chunk) + b"\n\n"

    events = [event([{"index": 0, "delta": {"role": "assistant", "content": word}}]) for word in _CONTENT.split()]
    events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        events.append(event([], _usage()))
    events.append(b"data: [DONE]\n\n")
    return events


async def _send_plain(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    writer.write(_head(status, "application/json", [("content-length", str(len(body)))]))
    for start in range(0, len(body), 1 << 20):
        writer.write(body[start : start + (1 << 20)])
        await writer.drain()


async def _send_stream(writer: asyncio.StreamWriter, status: int, events: list[bytes]) -> None:
    writer.write(_head(status, "text/event-stream", [("transfer-encoding", "chunked")]))
    for event in events:
        writer.write(_chunk(event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _send_gzip(writer: asyncio.StreamWriter, chat: _Chat, include_usage: bool) -> None:
    if not chat.stream:
        body = gzip.compress(_chat_body(chat.model))
        extra = [("content-encoding", "gzip"), ("content-length", str(len(body)))]
        writer.write(_head(200, "application/json", extra) + body)
        await writer.drain()
        return
    # One gzip member, flushed after each event: the stream stays incremental, as a compressing server's does.
    compressor = zlib.compressobj(wbits=31)
    writer.write(_head(200, "text/event-stream", [("content-encoding", "gzip"), ("transfer-encoding", "chunked")]))
    for event in _stream_events(chat.model, include_usage):
        writer.write(_chunk(compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)))
        await writer.drain()
    writer.write(_chunk(compressor.flush()) + b"0\r\n\r\n")
    await writer.drain()


async def _send_trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, model: str, piece: bytes, interval_s: float
) -> None:
    start = b'data: {"id":"chatcmpl-misbehaving","model":"' + model.encode() + b'","choices":[{"delta":{"content":"'
    writer.write(_head(200, "text/event-stream", [("transfer-encoding", "chunked")]) + _chunk(start))
    await writer.drain()
    gone = asyncio.ensure_future(reader.read())  # EOF: the client closed its side
    try:
        while not gone.done():
            writer.write(_chunk(piece))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gone), interval_s)
    finally:
        gone.cancel()
