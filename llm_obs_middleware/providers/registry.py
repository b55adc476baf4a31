"""Which adapter speaks each provider kind, and which recognises an inbound request path.

Two kinds of inbound path: OpenAI-compatible ones (``/v1/chat/completions``...), routed by model;
and native ones, ``/{provider}/<the provider's own path>``, forwarded to that configured provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from llm_obs_middleware.asgi.messages import route_path
from llm_obs_middleware.asgi.state import SCOPE_KEY, get_exchange
from llm_obs_middleware.errors import UnknownProviderError
from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter
from llm_obs_middleware.providers.openai.azure import AzureOpenAIAdapter

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Scope

__all__ = [
    "PROVIDER_NAMES",
    "Recognised",
    "RequestMatch",
    "adapter_for_kind",
    "llm_path",
    "match_request",
    "native_provider",
    "recognise",
]

# gen_ai.provider.name for each kind (OpenTelemetry GenAI well-known values where one exists).
PROVIDER_NAMES = {
    "openai": "openai",
    "openai_compatible": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "vllm": "vllm",
    "ollama": "ollama",
}
_OPENAI = OpenAIAdapter()
_BY_KIND: dict[str, ProviderAdapter] = {
    "openai": _OPENAI,
    "openai_compatible": _OPENAI,
    "azure_openai": AzureOpenAIAdapter(),
    **{kind: OpenAIAdapter(PROVIDER_NAMES[kind]) for kind in ("mistral", "groq", "deepseek", "vllm")},
}


class RequestMatch(NamedTuple):
    """An inbound request recognised as an LLM exchange."""

    adapter: ProviderAdapter
    endpoint: Endpoint
    provider: str | None
    """The configured provider named by a native path (``None``: route by model)."""
    path: str
    """Path to append to the provider's ``base_url``."""


def adapter_for_kind(kind: str) -> ProviderAdapter:
    """The adapter speaking a provider kind's wire format."""
    _load_native_adapters()
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownProviderError(f"provider kind {kind!r} is not supported yet") from None


def native_provider(path: str, provider_kinds: Mapping[str, str]) -> tuple[str, str] | None:
    """``(provider, rest)`` when the path's first segment names a configured provider."""
    head, _, rest = path[1:].partition("/")
    if head in provider_kinds:
        return head, "/" + rest
    return None


def match_request(method: str, path: str, provider_kinds: Mapping[str, str]) -> RequestMatch | None:
    """Recognise an LLM exchange: native ``/{provider}/...`` first, then the OpenAI-compatible API."""
    native = native_provider(path, provider_kinds)
    if native is not None:
        provider, rest = native
        adapter = adapter_for_kind(provider_kinds[provider])
        endpoint = adapter.match(method, rest)
        return RequestMatch(adapter, endpoint, provider, rest) if endpoint is not None else None
    endpoint = _OPENAI.match(method, path)
    if endpoint is None:
        return None
    return RequestMatch(_OPENAI, endpoint, None, endpoint.upstream_path)


class Recognised(NamedTuple):
    """What :func:`recognise` stored on the exchange: the answer for one path and provider set."""

    path: str
    provider_kinds: Mapping[str, str]
    match: RequestMatch | None


def llm_path(scope: Scope, prefix: str) -> tuple[str, bool]:
    """``(path, routed)``: the path to recognise, and whether it lies under ``prefix`` (the router's).

    Under ``prefix`` the path is what follows it (``/`` at least); elsewhere the whole path (an app's
    own LLM-shaped endpoint). Without a prefix every path is the router's."""
    path = route_path(scope)
    if not prefix:
        return path, True
    if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("/", ""):
        return path[len(prefix) :] or "/", True
    return path, False


def recognise(scope: Scope, path: str, provider_kinds: Mapping[str, str]) -> RequestMatch | None:
    """The request's LLM endpoint, matched once per request.

    The first layer that asks (trace context, accounting or the router: each works alone) matches the
    path and stores the answer on the exchange in ``scope["llm_obs"]``; the others read it. A layer with
    another path or provider set (a differently configured middleware) matches again.
    """
    exchange = scope.get(SCOPE_KEY)
    if exchange is not None:
        seen = exchange.recognised
        if (
            isinstance(seen, Recognised)
            and seen.path == path
            and (seen.provider_kinds is provider_kinds or seen.provider_kinds == provider_kinds)
        ):
            return seen.match
    matched = match_request(scope["method"], path, provider_kinds)
    if exchange is None and matched is not None:
        exchange = get_exchange(scope)
    if exchange is not None:
        exchange.recognised = Recognised(path, provider_kinds, matched)
    return matched


def _load_native_adapters() -> None:
    """Import the native adapters on first use (not at import): each package in ``_NATIVE_PACKAGES``
    has an ``adapter`` module exposing ``ADAPTERS: {kind: adapter}``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for name in _NATIVE_PACKAGES:
        _BY_KIND.update(importlib.import_module(f"{__package__}.{name}.adapter").ADAPTERS)


_NATIVE_PACKAGES = ("anthropic", "bedrock", "cohere", "gemini", "ollama")
_loaded = False
