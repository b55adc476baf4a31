"""The request side of an LLM exchange, written once by whichever middleware meets the request first:
what it is (API, operation, provider) and its body, read and decoded once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware.asgi.messages import BodyTooLarge, ClientGone, error_json, read_body, send_json
from llm_obs_middleware.asgi.state import get_exchange
from llm_obs_middleware.errors import SchemaError

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
    from llm_obs_middleware.providers.registry import RequestMatch

__all__ = ["load_request", "open_request"]


async def open_request(
    scope: Scope,
    matched: RequestMatch,
    receive: Receive,
    send: Send,
    *,
    max_bytes: int,
    capture_content: bool,
) -> Exchange | None:
    """The exchange of a recognised LLM request, its request side written and its body decoded once.

    The first layer to call this (accounting, or the router used alone) writes the request side; later
    callers get it as it is. ``None`` when the exchange is over already (413 sent, or the client left).
    """
    exchange = get_exchange(scope)
    if not exchange.is_llm:
        endpoint = matched.endpoint
        exchange.is_llm = True
        exchange.api = endpoint.api
        exchange.operation = endpoint.operation
        if not exchange.provider:
            exchange.provider = matched.adapter.provider_name
    if exchange.body is None:
        loaded = await load_request(
            exchange,
            matched.adapter,
            matched.endpoint,
            receive,
            send,
            max_bytes=max_bytes,
            capture_content=capture_content,
        )
        if not loaded:
            return None
    return exchange


async def load_request(
    exchange: Exchange,
    adapter: ProviderAdapter,
    endpoint: Endpoint,
    receive: Receive,
    send: Send,
    *,
    max_bytes: int,
    capture_content: bool,
) -> bool:
    """Buffer the body (413 past ``max_bytes``) and decode it into ``exchange``.

    Returns ``False`` when the exchange is over already (413 sent, or the client left). A body that
    does not decode is not an error here: ``exchange.request_error`` says why, and the router (which
    owns the answer) turns it into a 400 while an app's own endpoint gets the body as it came.
    """
    try:
        body = await read_body(receive, max_bytes)
    except BodyTooLarge:
        exchange.fail("rejected", "request_too_large")
        message = f"request body exceeds the limit of {max_bytes} bytes"
        await send_json(send, 413, error_json(message, "invalid_request_error", code="request_too_large"))
        return False
    except ClientGone:
        exchange.fail("client_disconnected", "client_disconnected")
        return False
    exchange.body = body
    try:
        request = adapter.decode_request(endpoint, body, capture_content=capture_content)
    except SchemaError as exc:
        exchange.request_error = str(exc)
    except RecursionError:  # msgspec's decoders stop at the interpreter's recursion limit (~1,000 levels)
        exchange.request_error = "request body nests JSON too deeply"
    else:
        exchange.request = request
        exchange.requested_model = request.model
        exchange.streamed = request.stream
    return True
