"""The router's side of translation: answering an OpenAI client from a provider with another wire format.

Accounting stays exact because the provider's own observer reads the provider's native bytes (cache
writes, thinking tokens and all), while the client receives the translation. The accounting layer
sets up an observer for the API the client spoke when the response starts; right after that start
we swap in a view of the native observer, so accounting's ``finish()`` returns the native result and
the translated bytes are not parsed a second time. Without accounting in the stack nothing observes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from .._asgi import error_json, send_json
from ..errors import UpstreamError
from ..providers.openai import OpenAIAdapter
from ..translation import (
    ClientRequest,
    ResponseContext,
    TranslationError,
    Translator,
    UnsupportedRule,
    UpstreamRequest,
    translator_for,
)
from ..upstream import UpstreamResponse, iter_body
from ._failure import Failure
from ._relay import TotalDeadline, relay_stream, upstream_error_body

if TYPE_CHECKING:
    from ..providers.base import Endpoint, ProviderAdapter
    from ..schema import NormalizedResponse
    from ..state import Exchange, ResponseObserver
    from ..translation import StreamTranslator
    from ..types import Receive, Send

__all__ = ["DROPPED_HEADER", "Translation", "Untranslatable", "relay_translated", "translate_request"]

_CLIENT_FORMAT = OpenAIAdapter()  # what a translated answer is: its in-band stream error too
_SSE_TYPE = b"text/event-stream"

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


class _NativeView:
    """Stands in for accounting's observer: ignores the translated bytes, answers with the native result."""

    __slots__ = ("_native",)

    def __init__(self, native: ResponseObserver) -> None:
        self._native = native

    def feed(self, chunk: bytes, now_ns: int) -> None:
        return None

    def finish(self) -> NormalizedResponse:
        return self._native.finish()


class _TranslatingStream:
    """Feeds each upstream chunk to the native observer, then hands the client its translation."""

    __slots__ = ("_native", "_stream")

    def __init__(self, stream: StreamTranslator, native: ResponseObserver | None) -> None:
        self._stream = stream
        self._native = native

    def feed(self, chunk: bytes) -> bytes:
        if self._native is not None:
            self._native.feed(chunk, time.perf_counter_ns())
        return self._stream.feed(chunk)

    def close(self) -> bytes:
        return self._stream.close()


def _observe_natively(ex: Exchange, native: ResponseObserver) -> ResponseObserver | None:
    """After the response start: let accounting (if it observes) finish with the native observer."""
    if ex.observer is None:
        return None
    ex.observer = _NativeView(native)
    return native


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
    native = adapter.observer(translation.endpoint, ex, streamed=streamed, status=status)
    if streamed:
        await send({"type": "http.response.start", "status": status, "headers": [*_SSE, *extra]})
        observed = _observe_natively(ex, native)
        stream = translator.stream(context)
        translating = _TranslatingStream(stream, observed)
        await relay_stream(ex, response, provider, translating, _CLIENT_FORMAT, _SSE_TYPE, deadline, receive, send)
        return
    try:
        with TotalDeadline(None if response.body_arrived() else deadline):  # no timer when all is here
            body = b"".join([chunk async for chunk in iter_body(response, provider=provider)])
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
    native.feed(body, time.perf_counter_ns())
    length = (b"content-length", str(len(translated)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [_JSON, length, *extra]})
    _observe_natively(ex, native)
    await send({"type": "http.response.body", "body": translated, "more_body": False})
