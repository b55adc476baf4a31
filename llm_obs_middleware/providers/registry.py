"""Which adapter speaks each provider kind, and which recognises an inbound request path.

Two kinds of inbound path: OpenAI-compatible ones (``/v1/chat/completions``...), routed by model;
and native ones, ``/{provider}/<the provider's own path>``, forwarded to that configured provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from llm_obs_middleware.errors import UnknownProviderError
from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter
from llm_obs_middleware.providers.openai.azure import AzureOpenAIAdapter

__all__ = ["PROVIDER_NAMES", "RequestMatch", "adapter_for_kind", "match_request", "native_provider"]

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
