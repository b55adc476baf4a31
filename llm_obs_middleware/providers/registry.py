"""Which adapter handles which provider kind, and which recognises an inbound path."""

from __future__ import annotations

from ..errors import UnknownProviderError
from .base import Endpoint, ProviderAdapter
from .openai import OpenAIAdapter

__all__ = ["PROVIDER_NAMES", "adapter_for_kind", "match_endpoint"]

_OPENAI = OpenAIAdapter()
_BY_KIND: dict[str, ProviderAdapter] = {"openai": _OPENAI, "openai_compatible": _OPENAI}
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
_INBOUND: tuple[ProviderAdapter, ...] = (_OPENAI,)


def adapter_for_kind(kind: str) -> ProviderAdapter:
    """The adapter speaking a provider kind's wire format."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownProviderError(f"provider kind {kind!r} is not supported yet") from None


def match_endpoint(method: str, path: str) -> tuple[ProviderAdapter, Endpoint] | None:
    """Recognise an inbound LLM endpoint (path relative to the route prefix)."""
    for adapter in _INBOUND:
        endpoint = adapter.match(method, path)
        if endpoint is not None:
            return adapter, endpoint
    return None
