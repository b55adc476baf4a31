"""OpenAI-compatible requests translated to other providers' native APIs, and their answers back.

One module per provider format, each with a :class:`Translator` for ``/v1/chat/completions``
(``providers/<name>/translate.py``) and one for ``/v1/embeddings`` (``providers/<name>/embeddings.py``).
The router uses :func:`translator_for` when a request's model resolves to a provider that does not
speak the OpenAI API. Translators are stateless; a stream gets its own :class:`StreamTranslator`.
"""

from __future__ import annotations

from typing import Any

from llm_obs_middleware.providers.openai.chat_shapes import (
    ChatRequest,
    ClientRequest,
    EmbeddingsRequest,
    decode_chat_request,
)
from llm_obs_middleware.providers.translate_base import (
    ResponseContext,
    StreamTranslator,
    TranslatedError,
    TranslationError,
    Translator,
    UnsupportedRule,
    UpstreamRequest,
)

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
        from llm_obs_middleware.providers.anthropic.translate import AnthropicTranslator
        from llm_obs_middleware.providers.bedrock.translate import BedrockTranslator
        from llm_obs_middleware.providers.bedrock.translate_embeddings import BedrockEmbeddings
        from llm_obs_middleware.providers.cohere.embeddings import CohereEmbeddings
        from llm_obs_middleware.providers.cohere.translate import CohereTranslator
        from llm_obs_middleware.providers.gemini.embeddings import GeminiEmbeddings
        from llm_obs_middleware.providers.gemini.translate import GeminiTranslator
        from llm_obs_middleware.providers.ollama.embeddings import OllamaEmbeddings
        from llm_obs_middleware.providers.ollama.translate import OllamaTranslator

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
