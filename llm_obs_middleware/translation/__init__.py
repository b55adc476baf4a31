"""OpenAI-compatible requests translated to other providers' native APIs, and their answers back.

One module per provider format, each with a :class:`Translator` for ``/v1/chat/completions``;
``embeddings`` holds those for ``/v1/embeddings``.
The router uses :func:`translator_for` when a request's model resolves to a provider that does not
speak the OpenAI API. Translators are stateless; a stream gets its own :class:`StreamTranslator`.
"""

from __future__ import annotations

from typing import Any

from ._common import (
    ResponseContext,
    StreamTranslator,
    TranslatedError,
    TranslationError,
    Translator,
    UnsupportedRule,
    UpstreamRequest,
)
from ._openai import ChatRequest, ClientRequest, EmbeddingsRequest, decode_chat_request

__all__ = [
    "ChatRequest",
    "ClientRequest",
    "EmbeddingsRequest",
    "ResponseContext",
    "StreamTranslator",
    "TranslatedError",
    "TranslationError",
    "Translator",
    "UnsupportedRule",
    "UpstreamRequest",
    "decode_chat_request",
    "translator_for",
]

_CHAT = "openai.chat_completions"
_EMBEDDINGS = "openai.embeddings"
_translators: dict[str, dict[str, Translator[Any]]] = {}


def translator_for(kind: str, api: str) -> Translator[Any] | None:
    """The translator from the client's OpenAI ``api`` to a provider ``kind``, if there is one."""
    if not _translators:
        from .anthropic import AnthropicTranslator
        from .bedrock import BedrockTranslator
        from .bedrock_embeddings import BedrockEmbeddings
        from .cohere import CohereTranslator
        from .embeddings import CohereEmbeddings, GeminiEmbeddings, OllamaEmbeddings
        from .gemini import GeminiTranslator
        from .ollama import OllamaTranslator

        _translators[_CHAT] = {
            "anthropic": AnthropicTranslator(),
            "bedrock": BedrockTranslator(),
            "cohere": CohereTranslator(),
            "gemini": GeminiTranslator(),
            "ollama": OllamaTranslator(),
        }
        _translators[_EMBEDDINGS] = {
            "bedrock": BedrockEmbeddings(),
            "cohere": CohereEmbeddings(),
            "gemini": GeminiEmbeddings(),
            "ollama": OllamaEmbeddings(),
        }
    return _translators.get(api, {}).get(kind)
