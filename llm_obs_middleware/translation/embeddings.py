"""OpenAI ``/v1/embeddings`` to Gemini ``batchEmbedContents`` and Ollama ``/api/embed``, and back.

Inputs must be texts (token-id arrays only mean something to OpenAI's own tokenizer: 400).
``dimensions`` maps to ``outputDimensionality`` / ``dimensions``; ``encoding_format: base64`` (the
openai SDK's default) is honoured by encoding the returned floats as little-endian float32. Gemini
reports no token counts for embeddings, so its ``usage`` is zero (the record estimates them).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

import msgspec

from ._common import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedRule,
    UpstreamRequest,
)
from ._openai import Embedding, Embeddings, EmbeddingsRequest, EmbeddingsUsage, encode
from .gemini import GeminiTranslator
from .ollama import OllamaTranslator

__all__ = ["GeminiEmbeddings", "OllamaEmbeddings"]


class _Values(msgspec.Struct):
    values: list[float] = []


class _GeminiBatch(msgspec.Struct):
    embeddings: list[_Values] = []


class _OllamaEmbed(msgspec.Struct):
    model: str = ""
    embeddings: list[list[float]] = []
    prompt_eval_count: int = 0


_decode_gemini = msgspec.json.Decoder(_GeminiBatch).decode
_decode_ollama = msgspec.json.Decoder(_OllamaEmbed).decode


def _texts(request: EmbeddingsRequest) -> list[str]:
    texts = request.texts
    if texts is None:
        raise TranslationError("token-id inputs cannot be translated: send the texts", param="input")
    return texts


def _body(vectors: list[list[float]], base64_output: bool, model: str, prompt_tokens: int) -> bytes:
    data = [
        Embedding(index=index, embedding=_base64(vector) if base64_output else vector)
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
        requests = [{**one, "content": {"parts": [{"text": text}]}} for text in _texts(client)]
        return UpstreamRequest(f"/v1beta/models/{name}:batchEmbedContents", encode({"requests": requests}), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        vectors = [item.values for item in _decode_gemini(body).embeddings]
        return _body(vectors, context.base64, context.model, 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)


class OllamaEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Ollama ``/api/embed`` and back."""

    def __init__(self) -> None:
        self._errors = OllamaTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        body: dict[str, Any] = {"model": model, "input": _texts(client)}
        if client.dimensions is not None:
            body["dimensions"] = client.dimensions
        return UpstreamRequest("/api/embed", encode(body), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        answer = _decode_ollama(body)
        return _body(answer.embeddings, context.base64, answer.model or context.model, answer.prompt_eval_count)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)
