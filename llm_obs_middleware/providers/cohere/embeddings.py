"""OpenAI ``/v1/embeddings`` to Cohere v2 ``/v2/embed``, and back.

``dimensions`` maps to ``output_dimension``. Cohere is always asked for floats (its own ``base64``
type is not documented as OpenAI's encoding); ``encoding_format: base64`` is honoured by encoding
them here. OpenAI has no ``input_type``: Cohere's v3+ models require one, so the request sends
``search_document`` (what a corpus being indexed needs; queries embedded this way still match, a
little less well). A client that needs ``search_query`` calls Cohere natively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from llm_obs_middleware.providers.cohere.translate import CohereTranslator
from llm_obs_middleware.providers.embeddings_common import embeddings_body, texts
from llm_obs_middleware.providers.openai.chat_shapes import EmbeddingsRequest, encode
from llm_obs_middleware.providers.translate_base import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    UnsupportedRule,
    UpstreamRequest,
)

__all__ = ["COHERE_INPUT_TYPE", "CohereEmbeddings"]

COHERE_INPUT_TYPE = "search_document"
"""The ``input_type`` of translated Cohere embed requests (OpenAI's API has no such field)."""


class _CohereVectors(msgspec.Struct):
    floats: list[list[float]] | None = msgspec.field(default=None, name="float")


class _CohereBilled(msgspec.Struct):
    input_tokens: int | float = 0


class _CohereMeta(msgspec.Struct):
    billed_units: _CohereBilled | None = None


class _CohereEmbed(msgspec.Struct):
    embeddings: _CohereVectors
    meta: _CohereMeta | None = None


_decode_cohere = msgspec.json.Decoder(_CohereEmbed).decode


class CohereEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Cohere v2 ``/v2/embed`` and back."""

    def __init__(self) -> None:
        self._errors = CohereTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        body: dict[str, Any] = {
            "model": model,
            "texts": texts(client),
            "input_type": COHERE_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if client.dimensions is not None:
            body["output_dimension"] = client.dimensions
        return UpstreamRequest("/v2/embed", encode(body), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        answer = _decode_cohere(body)
        vectors: Sequence[list[float] | str] | None = answer.embeddings.floats
        if vectors is None:
            raise msgspec.DecodeError("the embed answer has no embeddings.float")
        billed = answer.meta.billed_units if answer.meta is not None else None
        return embeddings_body(vectors, context.base64, context.model, int(billed.input_tokens) if billed else 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)
