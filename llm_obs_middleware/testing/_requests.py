"""Request side of the fake provider: routing, the few body fields it reads, and the override headers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from llm_obs_middleware.asgi.aliases import Receive, Scope

if TYPE_CHECKING:
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = [
    "DECODERS",
    "ChatRequest",
    "EmbeddingsRequest",
    "HTTPError",
    "NativeCall",
    "OpenAIEndpoint",
    "Overrides",
    "Request",
    "ResponsesRequest",
    "admit_openai_request",
    "below_root",
    "check_failure",
    "decode_openai_request",
    "fail_status",
    "read_body",
    "read_overrides",
    "route_path",
]


_ENDPOINTS = {
    "/chat/completions": ("POST", "chat"),
    "/responses": ("POST", "responses"),
    "/embeddings": ("POST", "embeddings"),
    "/models": ("GET", "models"),
}
_AZURE_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings|responses)$")
_FAIL_MODEL = re.compile(r"fail-(\d{3})")


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


class NativeCall(NamedTuple):
    """One request as a native-format mode (``_fake_<format>.handle``) receives it."""

    fake: FakeProvider
    scope: Scope
    headers: dict[str, str]
    body: bytes
    overrides: Overrides
    request_id: bytes
    """The fake's request counter, 24 hex digits."""


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


def below_root(scope: Scope) -> str:
    """The path below ``root_path`` (the whole path when it does not start with it)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


def route_path(scope: Scope) -> str:
    """The path below ``root_path``, without the optional ``/v1`` prefix."""
    path = below_root(scope)
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


def read_overrides(headers: Mapping[str, str], defaults: Overrides) -> Overrides:
    """``defaults`` (from the config) with the request's ``x-fake-*`` headers applied; a bad value is a 400."""

    def number(name: str, default: float, scale: float = 1.0) -> float:
        raw = headers.get(name)
        if raw is None:
            return default
        try:
            value = float(raw) * scale
        except ValueError:
            value = -1.0
        if not value >= 0:  # also rejects NaN
            raise HTTPError(400, f"{name}: expected a non-negative number, got {raw!r}")
        return value

    status = defaults.status
    if "x-fake-status" in headers:
        status = int(number("x-fake-status", 0))
        if not 100 <= status <= 599:
            raise HTTPError(400, f"x-fake-status: expected an HTTP status, got {headers['x-fake-status']!r}")
    drop = headers.get("x-fake-drop-after")
    return Overrides(
        latency_s=number("x-fake-latency-ms", defaults.latency_s, 0.001),
        ttft_s=number("x-fake-ttft-ms", defaults.ttft_s, 0.001),
        interval_s=number("x-fake-chunk-interval-ms", defaults.interval_s, 0.001),
        chunks=min(int(number("x-fake-chunks", defaults.chunks)), 100_000),
        drop_after=None if drop is None else int(number("x-fake-drop-after", 0)),
        status=status,
    )


class OpenAIEndpoint(NamedTuple):
    """Which OpenAI endpoint a request is for."""

    name: str
    """``chat``, ``responses``, ``embeddings``, ``models`` or ``model`` (one model)."""
    path: str
    """The OpenAI path (``/chat/completions``...), whatever URL shape it came in."""
    deployment: str | None
    """The Azure deployment named in the URL, which stands for the model."""


def admit_openai_request(scope: Scope, headers: Mapping[str, str], overrides: Overrides) -> OpenAIEndpoint:
    """The endpoint, after the checks the API makes before reading the body: path, method, key.

    Raises:
        HTTPError: an unknown path (404), a wrong method (405), no key (401), or a failure the
            ``x-fake-status`` header or the config asks for.
    """
    path = route_path(scope)
    # Azure OpenAI: the same payloads at deployment URLs (the deployment names the model).
    deployment = None
    if (azure := _AZURE_DEPLOYMENT.match(path)) is not None:
        deployment, path = azure.group(1), "/" + azure.group(2)
    elif path.startswith("/openai/v1/"):
        path = path.removeprefix("/openai/v1")
    method, endpoint = _ENDPOINTS.get(path, (None, None))
    if endpoint is None and path.startswith("/models/"):
        method, endpoint = "GET", "model"
    if endpoint is None:
        raise HTTPError(404, f"Invalid URL ({scope['method']} {scope['path']})")
    if scope["method"] != method:
        raise HTTPError(405, f"Method {scope['method']} not allowed for {scope['path']}")
    if "authorization" not in headers and "api-key" not in headers:
        raise HTTPError(401, "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.")
    check_failure(overrides, None)
    return OpenAIEndpoint(endpoint, path, deployment)


def decode_openai_request(endpoint: OpenAIEndpoint, body: bytes) -> tuple[Request, bytes]:
    """The request's fields and its model as a JSON string.

    Raises:
        HTTPError: a body that is not JSON or names no model (400), or a ``fail-NNN`` model (NNN).
    """
    try:
        request = DECODERS[endpoint.name](body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"We could not parse the JSON body of your request: {exc}") from None
    model_name = request.model or endpoint.deployment
    if not model_name:
        raise HTTPError(400, "you must provide a model parameter", param="model")
    check_failure(None, model_name)
    return request, msgspec.json.encode(model_name)


def fail_status(model: str) -> int | None:
    """The status a model named ``fail-NNN...`` asks for (NNN in 400..599), else ``None``."""
    found = _FAIL_MODEL.match(model)
    status = int(found.group(1)) if found is not None else 0
    return status if 400 <= status <= 599 else None


def check_failure(o: Overrides | None, model: str | None, prefix: str = "Fake failure") -> None:
    """Raise the failure the ``x-fake-status`` header (or the config) or a ``fail-NNN`` model asks for.

    Raises:
        HTTPError: ``"{prefix} requested by x-fake-status: NNN"`` or ``"{prefix} requested by model '...'"``.
    """
    if o is not None and o.status is not None and o.status >= 400:
        raise HTTPError(o.status, f"{prefix} requested by x-fake-status: {o.status}")
    if model is not None and (status := fail_status(model)) is not None:
        raise HTTPError(status, f"{prefix} requested by model {model!r}")
