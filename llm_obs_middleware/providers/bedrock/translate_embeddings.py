"""OpenAI ``/v1/embeddings`` to Bedrock ``InvokeModel`` of an embedding model, and back.

``POST /model/{modelId}/invoke``, SigV4-signed by the Bedrock adapter like Converse. Two families:

- ``amazon.titan-embed-*``: ``{"inputText", "dimensions"?}`` -> ``{"embedding", "inputTextTokenCount"}``.
  Titan embeds ONE text per request, so a request with several inputs is answered 400 naming the limit
  (rather than fanned out into several upstream calls, which would split one client request across
  several records, retries and rate-limit slots): send one input per call.
- ``cohere.embed-*``: ``{"texts", "input_type": "search_document", "output_dimension"?}`` ->
  ``{"embeddings": [[...]]}``. ``input_type`` is fixed as for Cohere's own API (see ``providers/cohere/embeddings.py``).
  Cohere on Bedrock reports its token count only in a response header, which the translated answer
  cannot see: its ``usage`` is zero (the record estimates it).

Vectors are floats; ``encoding_format: base64`` is honoured by encoding them as little-endian float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from llm_obs_middleware.providers.bedrock.adapter import embedding_family
from llm_obs_middleware.providers.bedrock.translate import BedrockTranslator
from llm_obs_middleware.providers.bedrock.wire import CohereVectors, InvokeEmbedRequest, InvokeEmbedResponse
from llm_obs_middleware.providers.cohere.embeddings import COHERE_INPUT_TYPE
from llm_obs_middleware.providers.embeddings_common import embeddings_body, texts
from llm_obs_middleware.providers.openai.chat_shapes import EmbeddingsRequest, encode
from llm_obs_middleware.providers.translate_base import (
    EmbeddingsDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedRule,
    UpstreamRequest,
)

__all__ = ["BedrockEmbeddings"]


_decode_answer = msgspec.json.Decoder(InvokeEmbedResponse).decode


class BedrockEmbeddings(EmbeddingsDecoding):
    """OpenAI embeddings to Bedrock InvokeModel (Titan or Cohere embedding models) and back."""

    def __init__(self) -> None:
        self._errors = BedrockTranslator()

    def request(self, client: EmbeddingsRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        family = embedding_family(model)
        inputs = texts(client)
        if family == "titan":
            if len(inputs) != 1:
                raise TranslationError(
                    f"{model} embeds one input per request (Bedrock Titan takes a single inputText); "
                    f"this request has {len(inputs)}: send one input per call",
                    param="input",
                    code="too_many_inputs",
                )
            body = InvokeEmbedRequest(input_text=inputs[0], dimensions=client.dimensions)
        elif family == "cohere":
            body = InvokeEmbedRequest(texts=inputs, input_type=COHERE_INPUT_TYPE, output_dimension=client.dimensions)
        else:
            raise TranslationError(
                f"bedrock model {model!r} has no embeddings translation "
                "(amazon.titan-embed-* and cohere.embed-* models have): call it natively",
                param="model",
                code="unsupported_model",
            )
        # Encoded as botocore encodes a URI label (":" of "...-v2:0" as %3A), so SigV4 signs what is sent.
        return UpstreamRequest(f"/model/{quote(model, safe='')}/invoke", encode(body), [], ())

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        answer = _decode_answer(body)
        if answer.embedding is not None:
            vectors = [answer.embedding]
        elif isinstance(answer.embeddings, CohereVectors):
            vectors = answer.embeddings.floats
        elif answer.embeddings is not None:
            vectors = answer.embeddings
        else:
            raise msgspec.DecodeError("the InvokeModel answer has neither embedding nor embeddings")
        return embeddings_body(vectors, context.base64, context.model, answer.input_text_token_count or 0)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return self._errors.error(status, body, headers, retry_after)
