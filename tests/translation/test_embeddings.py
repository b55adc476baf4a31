"""``/v1/embeddings`` translated to Gemini and Ollama: request and answer shapes, then the openai SDK
through the gateway to the fake provider (float and base64 vectors, the record of both sides)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer
from llm_obs_middleware.translation import ResponseContext, TranslationError, Translator, translator_for

from ._golden import CREATED
from .test_gateway_translation import eventually

FAKE = FakeProviderConfig(prompt_tokens=9, embedding_dimensions=6)


def embeddings_translator(kind: str) -> Translator[Any]:
    found = translator_for(kind, "openai.embeddings")
    assert found is not None
    return found


def test_request_shapes() -> None:
    body = b'{"model": "m", "input": ["a cat", "a dog"], "dimensions": 4, "encoding_format": "base64"}'
    gemini = embeddings_translator("gemini")
    upstream = gemini.request(gemini.decode(body), "text-embedding-004", unsupported="drop")
    assert upstream.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    one = {"model": "models/text-embedding-004", "outputDimensionality": 4}
    assert json.loads(upstream.body) == {
        "requests": [{**one, "content": {"parts": [{"text": text}]}} for text in ("a cat", "a dog")]
    }
    ollama = embeddings_translator("ollama")
    upstream = ollama.request(ollama.decode(body), "nomic-embed-text", unsupported="drop")
    assert (upstream.path, json.loads(upstream.body)) == (
        "/api/embed",
        {"model": "nomic-embed-text", "input": ["a cat", "a dog"], "dimensions": 4},
    )


@pytest.mark.parametrize("kind", ["gemini", "ollama"])
def test_token_id_inputs_are_rejected(kind: str) -> None:
    translator = embeddings_translator(kind)
    with pytest.raises(TranslationError, match="token-id inputs"):
        translator.request(translator.decode(b'{"model": "m", "input": [[1, 2, 3]]}'), "m", unsupported="drop")


def test_answers_in_openai_shape_float_and_base64() -> None:
    gemini = embeddings_translator("gemini")
    answer = b'{"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}'
    floats = json.loads(gemini.response(answer, ResponseContext(CREATED, "text-embedding-004", "id-1")))
    assert floats == {
        "data": [
            {"index": 0, "embedding": [0.5, -1.0], "object": "embedding"},
            {"index": 1, "embedding": [0.25, 2.0], "object": "embedding"},
        ],
        "model": "text-embedding-004",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
        "object": "list",
    }
    ollama = embeddings_translator("ollama")
    answer = b'{"model": "nomic-embed-text", "embeddings": [[0.5, -1.0]], "prompt_eval_count": 3}'
    packed = json.loads(ollama.response(answer, ResponseContext(CREATED, "x", "id-1", base64=True)))
    assert struct.unpack("<2f", base64.b64decode(packed["data"][0]["embedding"])) == (0.5, -1.0)
    assert packed["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@pytest.fixture
def gateway_url(fake: FakeProviderServer, tmp_path: Path) -> Iterator[str]:
    config = Config.from_dict(
        {
            "providers": {
                "gemini": {"kind": "gemini", "base_url": fake.base_url, "api_keys": ["gemini-upstream-key"]},
                "ollama": {"kind": "ollama", "base_url": fake.base_url},
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    with BackgroundServer(create_gateway(config)) as server:
        yield server.url


@pytest.mark.parametrize(
    ("model", "served_api", "provider"),
    [
        ("gemini/text-embedding-004", "gemini.batch_embed_contents", "gcp.gemini"),
        ("ollama/nomic-embed-text", "ollama.embed", "ollama"),
    ],
)
def test_sdk_embeddings_through_the_gateway(gateway_url: str, model: str, served_api: str, provider: str) -> None:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key="client-key", max_retries=0) as client:
        packed = client.embeddings.create(model=model, input=["a cat", "a dog"])  # the SDK asks for base64
        floats = client.embeddings.create(model=model, input="a cat", encoding_format="float")
    assert [len(item.embedding) for item in packed.data] == [6, 6]
    assert [item.index for item in packed.data] == [0, 1]
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding)

    def records() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = httpx.get(gateway_url + "/logs").json()["data"]
        return data if len(data) >= 2 else None

    record = eventually(records, "2 records")[0]
    assert (record["api"], record["served_api"], record["provider"], record["operation"]) == (
        "openai.embeddings",
        served_api,
        provider,
        "embeddings",
    )
    assert record["status"] == 200 and record["outcome"] == "completed"
