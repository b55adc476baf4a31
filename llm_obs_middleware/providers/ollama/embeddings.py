"""OpenAI ``/v1/embeddings`` to Ollama ``/api/embed``, and back (``dimensions`` is sent as is).

The usage is ``prompt_eval_count``. https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from llm_obs_middleware.providers.embeddings_common import embeddings_body, texts
from llm_obs_middleware.providers.ollama.translate import OllamaTranslator
from llm_obs_middleware.providers.ollama.wire import EmbedVectors
from llm_obs_middleware.providers.openai.chat_shapes import EmbeddingsRequest, encode
from llm_obs_middleware.providers.translate_base import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    UnsupportedRule,
    UpstreamRequest,
)

__all__ = ["OllamaEmbeddings"]

_decode_vectors = msgspec.json.Decoder(EmbedVectors).decode


class OllamaEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Ollama ``/api/embed`` and back; errors as the chat translator's."""

    def __init__(self) -> None:
        self._errors = OllamaTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        body: dict[str, Any] = {"model": model, "input": texts(client)}
        if client.dimensions is not None:
            body["dimensions"] = client.dimensions
        return UpstreamRequest("/api/embed", encode(body), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        answer = _decode_vectors(body)
        model = answer.model or context.model
        return embeddings_body(answer.embeddings, context.base64, model, answer.prompt_eval_count or 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)
