"""Small ASGI helpers: headers, sub-path matching, body buffering with replay, JSON errors."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from llm_obs_middleware.asgi.aliases import Message, Receive, Scope, Send

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "error_json",
    "get_header",
    "read_body",
    "replay_receive",
    "route_path",
    "send_json",
]

_json_encode = msgspec.json.Encoder().encode


class BodyTooLarge(Exception):
    """The request body exceeded the configured limit."""


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


def route_path(scope: Scope) -> str:
    """``path`` minus the ``root_path`` prefix (Starlette's ``Mount`` keeps the full path)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path


def get_header(scope: Scope, name: bytes) -> bytes | None:
    """First value of a request header; ``name`` must be lowercase (ASGI lowercases names)."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole request body, raising :class:`BodyTooLarge` past ``limit`` bytes."""
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one (disconnects)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def error_json(message: str, error_type: str, *, code: str | None = None, param: str | None = None) -> bytes:
    """An OpenAI-shaped error body, so SDK clients surface the message as they do for OpenAI."""
    return _json_encode({"error": {"message": message, "type": error_type, "param": param, "code": code}})


async def send_json(send: Send, status: int, body: bytes, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
