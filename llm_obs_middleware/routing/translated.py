"""The router's side of translation: answering an OpenAI client from a provider with another wire format.

Accounting stays exact because the provider's own observer reads the provider's native bytes (cache
writes, thinking tokens and all), while the client receives the translation. Before the response
starts the router says so with ``Exchange.observe_native``: the accounting layer (when it is in the
stack) then builds the provider's observer instead of one for the API the client spoke, and the router
feeds it the native bytes with ``Exchange.feed_unseen``; the translated bytes are not parsed a second
time. Without accounting in the stack nothing observes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from llm_obs_middleware.asgi.messages import error_json, send_json
from llm_obs_middleware.errors import UpstreamError
from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter
from llm_obs_middleware.providers.translators import (
    ClientRequest,
    ResponseContext,
    TranslationError,
    Translator,
    UnsupportedRule,
    UpstreamRequest,
    translator_for,
)
from llm_obs_middleware.routing.failure import Failure
from llm_obs_middleware.routing.relay import StreamFormat, relay_stream, total_deadline, upstream_error_body
from llm_obs_middleware.upstream.client import UpstreamResponse

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Send
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
    from llm_obs_middleware.providers.translators import StreamTranslator

__all__ = ["DROPPED_HEADER", "Translation", "Untranslatable", "relay_translated", "translate_request"]

_CLIENT_FORMAT = OpenAIAdapter()  # what a translated answer is: its in-band stream error too
_CLIENT_STREAM = StreamFormat(_CLIENT_FORMAT, b"text/event-stream")

DROPPED_HEADER = b"x-llm-obs-dropped-params"
"""Response header naming the OpenAI parameters a translated request left out (``unsupported_params: drop``)."""
_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class Translation(NamedTuple):
    """One attempt's translated request and what turns the answer back."""

    translator: Translator[Any]
    client: ClientRequest
    """The client's request as the translator read it."""
    upstream: UpstreamRequest
    endpoint: Endpoint
    """The provider adapter's endpoint for the native request: its observer accounts the answer."""
    model: str


class Untranslatable(NamedTuple):
    """Why a deployment cannot serve an OpenAI request: no translator, or a request it cannot express."""

    error_type: str
    failure: Failure | None
    """The 400 answer when the request itself is at fault (``None``: no translator for this provider)."""


def translate_request(
    ex: Exchange,
    kind: str,
    adapter: ProviderAdapter,
    model: str,
    rule: UnsupportedRule,
    decoded: dict[str, ClientRequest],
) -> Translation | Untranslatable:
    """The native request for a provider ``kind``; the client's body is decoded once into ``decoded``."""
    translator = translator_for(kind, ex.api)
    if translator is None:
        return Untranslatable("unsupported_translation", None)
    client = decoded.get(ex.api)
    try:
        if client is None:
            assert ex.body is not None
            try:
                client = decoded[ex.api] = translator.decode(ex.body)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise TranslationError(f"request cannot be translated: {exc}", code="invalid_request") from None
        upstream = translator.request(client, model, unsupported=rule)
    except TranslationError as exc:
        return Untranslatable("untranslatable", Failure(400, [_JSON], exc.body(), rejected=True))
    endpoint = adapter.match("POST", upstream.path.partition("?")[0])
    assert endpoint is not None, f"{kind} adapter does not recognise {upstream.path}"
    return Translation(translator, client, upstream, endpoint, model)


class _TranslatingStream:
    """Feeds each upstream chunk to the native observer, then hands the client its translation."""

    __slots__ = ("_exchange", "_stream")

    def __init__(self, stream: StreamTranslator, exchange: Exchange) -> None:
        self._stream = stream
        self._exchange = exchange

    def feed(self, chunk: bytes) -> bytes:
        self._exchange.feed_unseen(chunk, time.perf_counter_ns())
        return self._stream.feed(chunk)

    def close(self) -> bytes:
        return self._stream.close()


async def relay_translated(
    ex: Exchange,
    response: UpstreamResponse,
    *,
    translation: Translation,
    adapter: ProviderAdapter,
    provider: str,
    deadline: float,
    receive: Receive,
    send: Send,
) -> None:
    """Send the client the OpenAI translation of a provider answer (error, plain body or stream)."""
    translator, client, dropped = translation.translator, translation.client, translation.upstream.dropped
    status = response.status_code
    extra = [(DROPPED_HEADER, ",".join(dropped).encode())] if dropped else []
    if status >= 400:
        ex.outcome = "upstream_error"
        body = await upstream_error_body(response, provider, deadline)
        retry_after = response.headers.get("retry-after") or adapter.retry_after(status, body)
        error = translator.error(status, body, response.headers, retry_after)
        headers = [header for header in error.headers if header[0] != b"content-type"]
        await send_json(send, error.status, error.body, [*headers, *extra])
        return
    created = ex.start_unix_nano // 1_000_000_000
    response_id = f"chatcmpl-{ex.request_id}"
    context = ResponseContext(created, translation.model, response_id, client.include_usage, client.base64)
    streamed = adapter.is_stream(response.headers.get("content-type", "").encode("latin-1"))
    endpoint = translation.endpoint

    def native_observer(status: int) -> ResponseObserver:
        return adapter.observer(endpoint, ex, streamed=streamed, status=status)

    if streamed:
        ex.observe_native(native_observer)
        await send({"type": "http.response.start", "status": status, "headers": [*_SSE, *extra]})
        translating = _TranslatingStream(translator.stream(context), ex)
        await relay_stream(ex, response, provider, translating, _CLIENT_STREAM, deadline, receive, send)
        return
    try:
        async with total_deadline(deadline):
            body = b"".join([chunk async for chunk in response.chunks()])
    except UpstreamError as exc:
        ex.fail("upstream_error", "upstream_disconnected", str(exc))
        await send_json(send, 502, error_json(str(exc), "upstream_disconnected", code="upstream_disconnected"))
        return
    except TimeoutError:
        message = f"provider {provider!r} exceeded its total timeout"
        ex.fail("upstream_error", "upstream_timeout", message)
        await send_json(send, 504, error_json(message, "upstream_timeout", code="upstream_timeout"))
        return
    try:
        translated = translator.response(body, context)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        message = f"provider {provider!r} answered a body that cannot be translated: {exc}"
        ex.fail("upstream_error", "untranslatable_response", message)
        await send_json(send, 502, error_json(message, "upstream_error", code="untranslatable_response"))
        return
    length = (b"content-length", str(len(translated)).encode())
    ex.observe_native(native_observer)
    await send({"type": "http.response.start", "status": status, "headers": [_JSON, length, *extra]})
    ex.feed_unseen(body, time.perf_counter_ns())
    await send({"type": "http.response.body", "body": translated, "more_body": False})
