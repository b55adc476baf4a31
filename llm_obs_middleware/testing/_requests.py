"""Request side of the fake provider: the few body fields it reads, and the override headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from llm_obs_middleware.asgi.aliases import Receive, Scope

__all__ = [
    "DECODERS",
    "ChatRequest",
    "EmbeddingsRequest",
    "HTTPError",
    "Overrides",
    "Request",
    "ResponsesRequest",
    "read_body",
    "route_path",
]


class HTTPError(Exception):
    """Answered as an OpenAI-style error body with this status."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


class Overrides(msgspec.Struct, frozen=True):
    """Timing, chunking and failure settings of one request (config, then ``x-fake-*`` headers)."""

    latency_s: float
    ttft_s: float
    interval_s: float
    chunks: int
    drop_after: int | None
    status: int | None


class _Function(msgspec.Struct):
    name: str = "tool"
    parameters: dict[str, Any] | None = None


class _ChatTool(msgspec.Struct):
    type: str = "function"
    function: _Function | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    tools: list[_ChatTool] | None = None
    tool_choice: Any = None

    def tool(self) -> tuple[str, dict[str, Any] | None] | None:
        """The function the fake will call: the first one offered, unless tool_choice is "none"."""
        if self.tools and self.tool_choice != "none":
            for tool in self.tools:
                if tool.type == "function" and tool.function is not None:
                    return tool.function.name, tool.function.parameters
        return None


class _ResponsesTool(msgspec.Struct):
    type: str = "function"
    name: str = "tool"
    parameters: dict[str, Any] | None = None


class ResponsesRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    tools: list[_ResponsesTool] | None = None
    tool_choice: Any = None

    def tool(self) -> tuple[str, dict[str, Any] | None] | None:
        if self.tools and self.tool_choice != "none":
            for tool in self.tools:
                if tool.type == "function":
                    return tool.name, tool.parameters
        return None


class EmbeddingsRequest(msgspec.Struct):
    model: str | None = None
    input: Any = None
    encoding_format: str | None = None
    dimensions: int | None = None


Request = ChatRequest | ResponsesRequest | EmbeddingsRequest
DECODERS: dict[str, Callable[[bytes], Request]] = {
    "chat": msgspec.json.Decoder(ChatRequest).decode,
    "responses": msgspec.json.Decoder(ResponsesRequest).decode,
    "embeddings": msgspec.json.Decoder(EmbeddingsRequest).decode,
}


def route_path(scope: Scope) -> str:
    """The path below ``root_path``, without the optional ``/v1`` prefix."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path[3:] if path.startswith("/v1/") else path


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)
