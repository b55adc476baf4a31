"""An OpenAI-compatible fake upstream: a raw ASGI app for tests, the demo and the benchmarks.

Benchmarks use it as the floor every proxy is measured against, so it does as little as possible
per request: bodies are prebuilt byte templates (see ``_payloads``), a request decodes only the few
fields it needs with msgspec, and no delay is awaited unless one is configured.

Endpoints, each with and without the ``/v1`` prefix: ``POST /chat/completions`` (plain, streamed,
tool calls), ``POST /responses`` (plain and streamed), ``POST /embeddings`` (float or base64) and
``GET /models``. Usage numbers come from :class:`FakeProviderConfig`, so tests can assert them.

Per-request overrides, read from request headers (a gateway forwards client headers):

========================== ===================================================================
``x-fake-status``          answer with this status and an OpenAI error body (429 adds ``retry-after: 1``)
``x-fake-latency-ms``      delay before the response headers
``x-fake-ttft-ms``         delay before the first token of a stream
``x-fake-chunks``          number of content chunks (and completion tokens, unless configured)
``x-fake-chunk-interval-ms`` delay between two content chunks
``x-fake-drop-after``      streams: send this many events, then abort the connection (no ``[DONE]``)
========================== ===================================================================

A model named ``fail-NNN...`` (e.g. ``fail-500-model``, ``fail-429``) answers with status NNN.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar, cast

import msgspec

from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.testing import _payloads as p
from llm_obs_middleware.testing._requests import (
    ChatRequest,
    EmbeddingsRequest,
    HTTPError,
    NativeCall,
    Overrides,
    ResponsesRequest,
    admit_openai_request,
    decode_openai_request,
    read_body,
    read_overrides,
)
from llm_obs_middleware.testing._responses import FakeStreamAborted, send_json, send_stream
from llm_obs_middleware.testing.server import BackgroundServer

__all__ = [
    "FakeProvider",
    "FakeProviderConfig",
    "FakeProviderServer",
    "FakeStreamAborted",
    "RecordedRequest",
    "create_fake_provider",
    "run_fake_provider",
]

_T = TypeVar("_T")

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_TEMPLATE_CACHE_SIZE = 256


class FakeProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the fake provider answers (per-request headers override the timing and chunk fields)."""

    latency_s: float = 0.0
    """Delay before the response headers, for every response."""
    ttft_s: float = 0.0
    """Delay between the headers and the first token of a stream (the role/created preamble goes out
    with the headers, as with the real API, so time to first byte and time to first token differ)."""
    chunk_interval_s: float = 0.0
    """Delay between two content chunks of a stream."""
    chunks: int = 5
    """Content chunks in a stream (the plain answer holds the same text)."""
    prompt_tokens: int = 12
    """``prompt_tokens`` / ``input_tokens`` reported by every successful response."""
    completion_tokens: int | None = None
    """``completion_tokens`` / ``output_tokens``; ``None`` means one per content chunk."""
    cached_tokens: int = 0
    """Cached prompt tokens reported (a subset of ``prompt_tokens``)."""
    reasoning_tokens: int = 0
    """Reasoning tokens reported (a subset of the completion tokens)."""
    fail_status: int | None = None
    """Answer every request with this error status (``None``: succeed)."""
    embedding_dimensions: int = 8
    """Vector length when the embeddings request sets no ``dimensions``."""
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    """Models listed by ``GET /models``."""


class RecordedRequest(NamedTuple):
    """One request as the fake received it: for asserting what a gateway sent upstream."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return msgspec.json.decode(self.body)


class FakeProvider:
    """The fake provider app (pure ASGI). Build it with :func:`create_fake_provider`.

    Attributes:
        config: how it answers.
        requests: the last 100 requests received, oldest first.
    """

    def __init__(self, config: FakeProviderConfig | None = None) -> None:
        self.config = config or FakeProviderConfig()
        self.requests: deque[RecordedRequest] = deque(maxlen=100)
        self._ids = itertools.count(1)
        self._created = int(time.time())
        self._templates: dict[tuple[Any, ...], Any] = {}

    @property
    def config(self) -> FakeProviderConfig:
        return self._config

    @config.setter
    def config(self, config: FakeProviderConfig) -> None:
        self._config = config
        # What a request without x-fake-* headers gets, made once.
        self._defaults = Overrides(
            latency_s=config.latency_s,
            ttft_s=config.ttft_s,
            interval_s=config.chunk_interval_s,
            chunks=config.chunks,
            drop_after=None,
            status=config.fail_status,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = await read_body(receive)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.requests.append(RecordedRequest(scope["path"], headers, body))
        request_id = b"%024x" % next(self._ids)
        try:
            await self._handle(scope, headers, body, request_id, send)
        except HTTPError as exc:
            await self._send_error(send, exc.status, str(exc), request_id, param=exc.param)

    async def _handle(self, scope: Scope, headers: dict[str, str], body: bytes, rid: bytes, send: Send) -> None:
        overrides = read_overrides(headers, self._defaults)
        if overrides.latency_s > 0:
            await asyncio.sleep(overrides.latency_s)
        for handle in _native_handlers():
            if await handle(NativeCall(self, scope, headers, body, overrides, rid), send):
                return
        endpoint = admit_openai_request(scope, headers, overrides)
        if endpoint.name == "models":
            await _send_json(send, 200, p.models_body(self.config.models, self._created), rid)
        elif endpoint.name == "model":
            await _send_json(send, 200, p.model_body(endpoint.path.removeprefix("/models/"), self._created), rid)
        else:
            request, model = decode_openai_request(endpoint, body)
            if isinstance(request, EmbeddingsRequest):
                await _send_json(send, 200, self._embeddings(request, rid, model), rid)
            elif isinstance(request, ChatRequest):
                await self._chat(request, overrides, rid, model, send)
            else:
                await self._responses(request, overrides, rid, model, send)

    def _tokens(self, chunks: int) -> p.Tokens:
        config = self.config
        completion = chunks if config.completion_tokens is None else config.completion_tokens
        return p.Tokens(config.prompt_tokens, completion, config.cached_tokens, config.reasoning_tokens)

    def _template(self, key: tuple[Any, ...], build: Callable[..., _T], *args: Any) -> _T:
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _TEMPLATE_CACHE_SIZE:
                self._templates.clear()  # only reachable with many distinct x-fake-chunks values
            template = self._templates[key] = build(*args)
        return cast(_T, template)

    async def _chat(self, request: ChatRequest, o: Overrides, rid: bytes, model: bytes, send: Send) -> None:
        tokens = self._tokens(o.chunks)
        offered = request.tool()
        tool = None if offered is None else (offered[0], p.fake_arguments(offered[1]))
        if not request.stream:
            if tool is not None:
                body = p.chat_body(tokens, o.chunks, tool)  # names vary per request: not cached
            else:
                body = self._template(("chat", o.chunks), p.chat_body, tokens, o.chunks)
            await _send_json(send, 200, p.render(body, rid, self._created_at(), model), rid)
            return
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        if tool is not None:
            stream = p.chat_stream(tokens, o.chunks, include_usage, tool)
        else:
            stream = self._template(
                ("chat-stream", o.chunks, include_usage), p.chat_stream, tokens, o.chunks, include_usage
            )
        await self._stream(stream, o, rid, model, send)

    async def _responses(self, request: ResponsesRequest, o: Overrides, rid: bytes, model: bytes, send: Send) -> None:
        tokens = self._tokens(o.chunks)
        offered = request.tool()
        tool = None if offered is None else (offered[0], p.fake_arguments(offered[1]))
        if not request.stream:
            if tool is not None:
                body = p.responses_body(tokens, o.chunks, tool)
            else:
                body = self._template(("responses", o.chunks), p.responses_body, tokens, o.chunks)
            await _send_json(send, 200, p.render(body, rid, self._created_at(), model), rid)
            return
        if tool is not None:
            stream = p.responses_stream(tokens, o.chunks, tool)
        else:
            stream = self._template(("responses-stream", o.chunks), p.responses_stream, tokens, o.chunks)
        await self._stream(stream, o, rid, model, send)

    def _embeddings(self, request: EmbeddingsRequest, rid: bytes, model: bytes) -> bytes:
        inputs = request.input
        if inputs is None or inputs == [] or inputs == "":
            raise HTTPError(400, "'input' must be a non-empty string or array", param="input")
        # A string or one list of token ids is one input; a list of strings or of token lists is many.
        count = len(inputs) if isinstance(inputs, list) and not isinstance(inputs[0], int) else 1
        dimensions = request.dimensions or self.config.embedding_dimensions
        if not 0 < dimensions <= 8192 or count > 2048:
            raise HTTPError(400, "dimensions must be in 1..8192 and at most 2048 inputs", param="dimensions")
        base64_format = request.encoding_format == "base64"
        key = ("embeddings", count, dimensions, base64_format)
        body = self._template(key, p.embeddings_body, self._tokens(0), count, dimensions, base64_format)
        return p.render(body, rid, b"0", model)

    async def _stream(self, stream: p.StreamTemplate, o: Overrides, rid: bytes, model: bytes, send: Send) -> None:
        # One replace pass over all events: NUL never occurs in JSON text, so it is a safe separator.
        events = p.render(b"\0".join(stream.events), rid, self._created_at(), model).split(b"\0")
        headers = [*_SSE_HEADERS, _request_id(rid)]
        await send_stream(send, headers, events, o, first=stream.preamble, count=stream.deltas)

    async def _send_error(self, send: Send, status: int, message: str, rid: bytes, *, param: str | None) -> None:
        type_, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        body = p.error_body(message, type_, code, param)
        extra = [(b"retry-after", b"1")] if status == 429 else []
        await _send_json(send, status, body, rid, extra)

    def _created_at(self) -> bytes:
        return b"%d" % time.time()


NativeHandler = Callable[[NativeCall, Send], Awaitable[bool]]
_handlers: list[NativeHandler] | None = None


def _native_handlers() -> list[NativeHandler]:
    """Other wire formats (Anthropic, Gemini, ...): each ``testing/_fake_<format>.py`` module has an
    ``async handle(call: NativeCall, send) -> bool`` that answers the
    paths of its format and returns False for the rest. Loaded on first request."""
    global _handlers
    if _handlers is None:
        import importlib
        import pkgutil
        from pathlib import Path

        _handlers = [
            importlib.import_module(f"{__package__}.{module.name}").handle
            for module in pkgutil.iter_modules([str(Path(__file__).parent)])
            if module.name.startswith("_fake_")
        ]
    return _handlers


def create_fake_provider(config: FakeProviderConfig | None = None) -> FakeProvider:
    """Build the fake provider ASGI app (see the module docstring for endpoints and overrides)."""
    return FakeProvider(config)


def run_fake_provider(
    host: str = "127.0.0.1", port: int = 9100, config: FakeProviderConfig | None = None, *, log_level: str = "info"
) -> None:
    """Serve the fake provider with uvicorn until interrupted (what ``llm-obs fake-provider`` runs)."""
    import uvicorn

    # No access log: the fake is the benchmarks' floor, and logging each request would dominate it.
    uvicorn.run(create_fake_provider(config), host=host, port=port, log_level=log_level, access_log=False, ws="none")


class FakeProviderServer:
    """The fake provider served over loopback by uvicorn in a background thread.

    Use it as a context manager; ``url`` is the OpenAI ``base_url`` (``http://127.0.0.1:PORT/v1``)
    and ``app.requests`` holds what it received::

        with FakeProviderServer(FakeProviderConfig(ttft_s=0.02)) as fake:
            client = openai.OpenAI(base_url=fake.url, api_key="sk-test")

    Args:
        config: how the fake answers.
        host: interface to bind.
        port: port to bind; ``0`` picks a free one.
    """

    def __init__(self, config: FakeProviderConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_fake_provider(config)
        self._server = BackgroundServer(self.app, host=host, port=port, lifespan="off")

    @property
    def base_url(self) -> str:
        """Root URL without the ``/v1`` prefix, e.g. ``http://127.0.0.1:54321``."""
        return self._server.url

    @property
    def url(self) -> str:
        """The ``base_url`` an OpenAI client takes, e.g. ``http://127.0.0.1:54321/v1``."""
        return self._server.url + "/v1"

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _request_id(rid: bytes) -> tuple[bytes, bytes]:
    return (b"x-request-id", b"req_" + rid)


async def _send_json(
    send: Send, status: int, body: bytes, rid: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_json(send, status, body, _JSON, _request_id(rid), *(extra or ()))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
