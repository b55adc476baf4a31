"""OpenAI ``/v1/embeddings`` to Gemini ``batchEmbedContents`` (one request per input), and back.

``dimensions`` maps to ``outputDimensionality``. Gemini reports no token counts for embeddings, so
the answer's ``usage`` is zero (the record estimates them). https://ai.google.dev/api/embeddings
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.providers.embeddings_common import embeddings_body, texts
from llm_obs_middleware.providers.gemini.translate import GeminiTranslator
from llm_obs_middleware.providers.gemini.wire import BatchEmbedVectors
from llm_obs_middleware.providers.openai.chat_shapes import EmbeddingsRequest, encode
from llm_obs_middleware.providers.translate_base import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    UnsupportedRule,
    UpstreamRequest,
)

__all__ = ["GeminiEmbeddings"]

_decode_vectors = msgspec.json.Decoder(BatchEmbedVectors).decode


class GeminiEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Gemini ``batchEmbedContents`` and back; errors as the chat translator's."""

    def __init__(self) -> None:
        self._errors = GeminiTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        name = model.removeprefix("models/")
        one: dict[str, Any] = {"model": f"models/{name}"}
        if client.dimensions is not None:
            one["outputDimensionality"] = client.dimensions
        requests = [{**one, "content": {"parts": [{"text": text}]}} for text in texts(client)]
        path = f"/v1beta/models/{quote(name, safe='')}:batchEmbedContents"  # the name stays one path segment
        return UpstreamRequest(path, encode({"requests": requests}), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        vectors = [item.values for item in _decode_vectors(body).embeddings]
        return embeddings_body(vectors, context.base64, context.model, 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)
