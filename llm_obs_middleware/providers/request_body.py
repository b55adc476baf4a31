"""Reading and decoding an LLM request body once, for whichever middleware meets it first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware.asgi.messages import BodyTooLarge, ClientGone, error_json, read_body, send_json
from llm_obs_middleware.errors import SchemaError

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Send
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter

__all__ = ["load_request"]


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
