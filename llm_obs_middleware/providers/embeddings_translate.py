"""OpenAI ``/v1/embeddings`` to Gemini ``batchEmbedContents``, Ollama ``/api/embed`` and Cohere
``/v2/embed``, and back (Bedrock's InvokeModel embeddings are in :mod:`.bedrock_embeddings`).

Inputs must be texts (token-id arrays only mean something to OpenAI's own tokenizer: 400).
``dimensions`` maps to ``outputDimensionality`` / ``dimensions`` / ``output_dimension``;
``encoding_format: base64`` (the openai SDK's default) is honoured by encoding the returned floats as
little-endian float32 here, Cohere's included (its own ``base64`` type is not documented as that
encoding, so it is always asked for floats). Gemini
reports no token counts for embeddings, so its ``usage`` is zero (the record estimates them).

OpenAI has no ``input_type``: Cohere's v3+ models require one, so the request sends
``search_document`` (what a corpus being indexed needs; queries embedded this way still match, a
little less well). A client that needs ``search_query`` calls Cohere natively.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.providers.cohere.translate import CohereTranslator
from llm_obs_middleware.providers.gemini.translate import GeminiTranslator
from llm_obs_middleware.providers.ollama.translate import OllamaTranslator
from llm_obs_middleware.providers.openai.chat_shapes import (
    Embedding,
    Embeddings,
    EmbeddingsRequest,
    EmbeddingsUsage,
    encode,
)
from llm_obs_middleware.providers.translate_base import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedRule,
    UpstreamRequest,
)

__all__ = ["COHERE_INPUT_TYPE", "CohereEmbeddings", "GeminiEmbeddings", "OllamaEmbeddings", "embeddings_body", "texts"]

COHERE_INPUT_TYPE = "search_document"
"""The ``input_type`` of translated Cohere embed requests (OpenAI's API has no such field)."""


class _Values(msgspec.Struct):
    values: list[float] = []


class _GeminiBatch(msgspec.Struct):
    embeddings: list[_Values] = []


class _OllamaEmbed(msgspec.Struct):
    model: str = ""
    embeddings: list[list[float]] = []
    prompt_eval_count: int = 0


class _CohereVectors(msgspec.Struct):
    floats: list[list[float]] | None = msgspec.field(default=None, name="float")


class _CohereBilled(msgspec.Struct):
    input_tokens: int | float = 0


class _CohereMeta(msgspec.Struct):
    billed_units: _CohereBilled | None = None


class _CohereEmbed(msgspec.Struct):
    embeddings: _CohereVectors
    meta: _CohereMeta | None = None


_decode_gemini = msgspec.json.Decoder(_GeminiBatch).decode
_decode_ollama = msgspec.json.Decoder(_OllamaEmbed).decode
_decode_cohere = msgspec.json.Decoder(_CohereEmbed).decode


def texts(request: EmbeddingsRequest) -> list[str]:
    """The inputs as texts (token ids: a 400)."""
    texts = request.texts
    if texts is None:
        raise TranslationError("token-id inputs cannot be translated: send the texts", param="input")
    return texts


def embeddings_body(vectors: Sequence[list[float] | str], base64_output: bool, model: str, prompt_tokens: int) -> bytes:
    """The OpenAI answer; ``vectors`` are floats, or already base64 strings (sent as they are)."""
    data = [
        Embedding(index=index, embedding=_base64(vector) if base64_output and not isinstance(vector, str) else vector)
        for index, vector in enumerate(vectors)
    ]
    return encode(Embeddings(data=data, model=model, usage=EmbeddingsUsage(prompt_tokens, prompt_tokens)))


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class GeminiEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Gemini ``batchEmbedContents`` (one request per input) and back."""

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
        vectors = [item.values for item in _decode_gemini(body).embeddings]
        return embeddings_body(vectors, context.base64, context.model, 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)


class OllamaEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Ollama ``/api/embed`` and back."""

    def __init__(self) -> None:
        self._errors = OllamaTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        body: dict[str, Any] = {"model": model, "input": texts(client)}
        if client.dimensions is not None:
            body["dimensions"] = client.dimensions
        return UpstreamRequest("/api/embed", encode(body), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        answer = _decode_ollama(body)
        return embeddings_body(
            answer.embeddings, context.base64, answer.model or context.model, answer.prompt_eval_count
        )

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)


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
