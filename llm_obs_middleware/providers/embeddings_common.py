"""What the translators of OpenAI ``/v1/embeddings`` share: the inputs as texts and the OpenAI answer.

Inputs must be texts (token-id arrays only mean something to OpenAI's own tokenizer: 400).
``encoding_format: base64`` (the openai SDK's default) is honoured by encoding the returned floats as
little-endian float32, as OpenAI does. Each provider's translator lives in its package
(``providers/<name>/embeddings.py``).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence

from llm_obs_middleware.providers.openai.chat_shapes import (
    Embedding,
    Embeddings,
    EmbeddingsRequest,
    EmbeddingsUsage,
    encode,
)
from llm_obs_middleware.providers.translate_base import TranslationError

__all__ = ["base64_floats", "embeddings_body", "texts"]


def texts(request: EmbeddingsRequest) -> list[str]:
    """The inputs as texts (token ids: a 400)."""
    inputs = request.texts
    if inputs is None:
        raise TranslationError("token-id inputs cannot be translated: send the texts", param="input")
    return inputs


def base64_floats(vector: list[float]) -> str:
    """A vector as OpenAI's ``encoding_format: base64`` sends it: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(vectors: Sequence[list[float] | str], base64_output: bool, model: str, prompt_tokens: int) -> bytes:
    """The OpenAI answer; ``vectors`` are floats, or already base64 strings (sent as they are)."""
    data = [
        Embedding(
            index=index, embedding=base64_floats(vector) if base64_output and not isinstance(vector, str) else vector
        )
        for index, vector in enumerate(vectors)
    ]
    return encode(Embeddings(data=data, model=model, usage=EmbeddingsUsage(prompt_tokens, prompt_tokens)))
