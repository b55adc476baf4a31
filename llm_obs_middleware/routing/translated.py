"""The router's side of translation: answering an OpenAI client from a provider with another wire format.

Accounting stays exact because the provider's own observer reads the provider's native bytes (cache
writes, thinking tokens and all), while the client receives the translation. Before the response
starts the router says so with ``Exchange.observe_native``: the accounting layer (when it is in the
stack) then builds the provider's observer instead of one for the API the client spoke; the translated
bytes are not parsed. A plain body is fed to it with ``Exchange.feed_unseen``. A stream is parsed once:
the router feeds the observer each chunk and the translator reads the events it decoded (see
``providers.translate_base.StreamTranslator``); without accounting the router builds that observer
itself, only to decode.
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
from llm_obs_middleware.routing.deadline import TotalDeadline
from llm_obs_middleware.routing.failure import Failure, NativeAnswer, send_answer
from llm_obs_middleware.routing.relay import StreamFormat, relay_stream, upstream_error_body
from llm_obs_middleware.upstream.client import UpstreamResponse

if TYPE_CHECKING:
    from collections.abc import Callable

    from llm_obs_middleware.asgi.aliases import Receive, Send
    from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
    from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
    from llm_obs_middleware.providers.translators import StreamTranslator

__all__ = [
    "DROPPED_HEADER",
    "Translation",
    "Untranslatable",
    "relay_translated",
    "translate_request",
    "translated_error",
]

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


def translated_error(
    ex: Exchange,
    response: UpstreamResponse,
    body: bytes,
    translation: Translation,
    adapter: ProviderAdapter,
    retry_after: str | None,
) -> Failure:
    """A provider's error answer (``body``: as much of it as was read) in OpenAI's error shape, carrying
    the provider's own answer for accounting: the record is the one the native route writes."""
    status = response.status_code
    error = translation.translator.error(status, body, response.headers, retry_after)
    dropped = translation.upstream.dropped
    headers = [*error.headers, (DROPPED_HEADER, ",".join(dropped).encode())] if dropped else error.headers
    observer = _native_observer(ex, response, translation, adapter)
    native = NativeAnswer(observer, response.headers.raw, adapter.response_header_extras, body)
    return Failure(error.status, headers, error.body, native=native)


def _native_observer(
    ex: Exchange, response: UpstreamResponse, translation: Translation, adapter: ProviderAdapter
) -> Callable[[int], ResponseObserver]:
    """What builds the provider's observer for ``response`` (see ``Exchange.observe_native``)."""
    streamed = adapter.is_stream(response.headers.get("content-type", "").encode("latin-1"))
    endpoint = translation.endpoint

    def native_observer(status: int) -> ResponseObserver:
        return adapter.observer(endpoint, ex, streamed=streamed, status=status)

    return native_observer


class _TranslatingStream:
    """A translated stream, parsed once: the provider's native observer decodes each upstream chunk and
    hands the events to the translator, whose OpenAI chunks go to the client.

    The observer is accounting's when accounting observes (:meth:`observer` is the factory handed to
    ``Exchange.observe_native``); :meth:`start` builds one only to decode when nothing observed.
    """

    __slots__ = ("_decoder", "_exchange", "_make", "_stream")

    def __init__(self, stream: StreamTranslator, exchange: Exchange, make: Callable[[int], ResponseObserver]) -> None:
        self._stream = stream
        self._exchange = exchange
        self._make = make
        self._decoder: ResponseObserver | None = None

    def observer(self, status: int) -> ResponseObserver:
        decoder = self._make(status)
        self._stream.attach(decoder)
        self._decoder = decoder
        return decoder

    def start(self, status: int) -> None:
        """After the response start: without an observer (no accounting in the stack) decode alone."""
        if self._decoder is None:
            self.observer(status)

    def feed(self, chunk: bytes) -> bytes:
        decoder = self._decoder
        assert decoder is not None, "start() comes first"
        try:
            decoder.feed(chunk, time.perf_counter_ns())
        except Exception:
            # The translation's decoder is broken: the record cannot use it either (as a translator's
            # own error, it propagates).
            if self._exchange.observer is decoder:
                self._exchange.observer = None
            raise
        return self._stream.take()

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
        body = await upstream_error_body(response, provider, deadline)
        retry_after = response.headers.get("retry-after") or adapter.retry_after(status, body)
        await send_answer(ex, translated_error(ex, response, body, translation, adapter, retry_after), send)
        return
    created = ex.start_unix_nano // 1_000_000_000
    response_id = f"chatcmpl-{ex.request_id}"
    context = ResponseContext(created, translation.model, response_id, client.include_usage, client.base64)
    streamed = adapter.is_stream(response.headers.get("content-type", "").encode("latin-1"))
    native_observer = _native_observer(ex, response, translation, adapter)

    if streamed:
        translating = _TranslatingStream(translator.stream(context), ex, native_observer)
        ex.observe_native(translating.observer, response.headers.raw, adapter.response_header_extras)
        await send({"type": "http.response.start", "status": status, "headers": [*_SSE, *extra]})
        translating.start(status)
        await relay_stream(ex, response, provider, translating, _CLIENT_STREAM, deadline, receive, send)
        return
    try:
        with TotalDeadline(None if response.body_arrived() else deadline):  # no timer when all is here
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
    ex.observe_native(native_observer, response.headers.raw, adapter.response_header_extras)
    await send({"type": "http.response.start", "status": status, "headers": [_JSON, length, *extra]})
    ex.feed_unseen(body, time.perf_counter_ns())
    await send({"type": "http.response.body", "body": translated, "more_body": False})
