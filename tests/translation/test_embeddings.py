"""``/v1/embeddings`` translated to Gemini, Ollama, Cohere and Bedrock (Titan, Cohere on Bedrock):
request and answer shapes (Cohere's and Bedrock's against golden JSON), then the openai SDK through the
gateway to the fake provider (float and base64 vectors, SigV4 for Bedrock, the record of both sides and
its token counts)."""

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
from llm_obs_middleware.providers.translators import ResponseContext, TranslationError, Translator, translator_for
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer
from llm_obs_middleware.testing._fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

from ._golden import CREATED, check_golden
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


def test_cohere_request_and_answer_match_golden() -> None:
    cohere = embeddings_translator("cohere")
    body = b'{"model": "m", "input": ["a cat", "a dog"], "dimensions": 256, "encoding_format": "float"}'
    upstream = cohere.request(cohere.decode(body), "embed-v4.0", unsupported="drop")
    assert upstream.path == "/v2/embed"
    check_golden("cohere/embed_request", json.loads(upstream.body))
    # Without dimensions the field is left out; base64 asks Cohere for its base64 type instead of floats.
    packed_request = cohere.request(
        cohere.decode(b'{"model": "m", "input": "a cat"}'), "embed-v4.0", unsupported="drop"
    )
    assert json.loads(packed_request.body) == {
        "model": "embed-v4.0",
        "texts": ["a cat"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    answer = {
        "id": "5807ee2e-0cda-445a-9ec8-864c60a06606",
        "embeddings": {"float": [[0.5, -1.0], [0.25, 2.0]]},
        "texts": ["a cat", "a dog"],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 4}},
        "response_type": "embeddings_by_type",
    }
    translated = cohere.response(json.dumps(answer).encode(), ResponseContext(CREATED, "embed-v4.0", "id-1"))
    check_golden("cohere/embed_response", json.loads(translated))


def test_cohere_base64_is_encoded_by_the_gateway_from_floats() -> None:
    cohere = embeddings_translator("cohere")
    upstream = cohere.request(
        cohere.decode(b'{"model": "m", "input": "a cat", "encoding_format": "base64"}'),
        "embed-v4.0",
        unsupported="drop",
    )
    # Cohere's own base64 type is not documented as OpenAI's little-endian float32: ask for floats.
    assert json.loads(upstream.body)["embedding_types"] == ["float"]
    answer = json.dumps({"embeddings": {"float": [[0.5, -1.0]]}, "meta": {"billed_units": {"input_tokens": 2}}})
    translated = json.loads(cohere.response(answer.encode(), ResponseContext(CREATED, "e", "id-1", base64=True)))
    assert translated["data"][0]["embedding"] == base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    assert translated["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


@pytest.mark.parametrize(
    ("model", "name"),
    [("amazon.titan-embed-text-v2:0", "titan"), ("cohere.embed-english-v3", "cohere")],
)
def test_bedrock_request_and_answer_match_golden(model: str, name: str) -> None:
    bedrock = embeddings_translator("bedrock")
    inputs = '"a cat"' if name == "titan" else '["a cat", "a dog"]'
    body = f'{{"model": "m", "input": {inputs}, "dimensions": 256, "encoding_format": "float"}}'.encode()
    upstream = bedrock.request(bedrock.decode(body), model, unsupported="drop")
    assert upstream.path == f"/model/{model.replace(':', '%3A')}/invoke"  # encoded as botocore signs it
    check_golden(f"bedrock/embed_{name}_request", json.loads(upstream.body))
    if name == "titan":
        answer: dict[str, Any] = {"embedding": [0.5, -1.0], "inputTextTokenCount": 3}
    else:
        answer = {"id": "x", "embeddings": [[0.5, -1.0], [0.25, 2.0]], "response_type": "embeddings_floats"}
    translated = bedrock.response(json.dumps(answer).encode(), ResponseContext(CREATED, model, "id-1"))
    check_golden(f"bedrock/embed_{name}_response", json.loads(translated))


def test_bedrock_titan_takes_one_input_and_other_models_are_named() -> None:
    bedrock = embeddings_translator("bedrock")
    two = bedrock.decode(b'{"model": "m", "input": ["a cat", "a dog"]}')
    with pytest.raises(TranslationError, match="one input per request") as raised:
        bedrock.request(two, "amazon.titan-embed-text-v2:0", unsupported="drop")
    assert json.loads(raised.value.body())["error"]["param"] == "input"
    with pytest.raises(TranslationError, match="no embeddings translation"):
        bedrock.request(two, "anthropic.claude-3-haiku-20240307-v1:0", unsupported="drop")
    # Cohere on Bedrock answering by type (when embedding_types was set natively) reads the same.
    by_type = b'{"embeddings": {"float": [[0.5, -1.0]]}, "response_type": "embeddings_by_type"}'
    packed = json.loads(bedrock.response(by_type, ResponseContext(CREATED, "cohere.embed-v4:0", "id-1", base64=True)))
    assert struct.unpack("<2f", base64.b64decode(packed["data"][0]["embedding"])) == (0.5, -1.0)


@pytest.mark.parametrize("kind", ["gemini", "ollama", "cohere", "bedrock"])
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
                "cohere": {"kind": "cohere", "base_url": fake.base_url, "api_keys": ["cohere-upstream-key"]},
                "bedrock": {
                    "kind": "bedrock",
                    "base_url": fake.base_url,
                    # The fake checks the SigV4 signature: InvokeModel is signed like Converse.
                    "aws_access_key_id": TEST_ACCESS_KEY_ID,
                    "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
                    "aws_region": "us-east-1",
                },
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    with BackgroundServer(create_gateway(config)) as server:
        yield server.url


@pytest.mark.parametrize(
    ("model", "served_api", "provider", "input_tokens"),
    [
        ("gemini/text-embedding-004", "gemini.batch_embed_contents", "gcp.gemini", None),
        ("ollama/nomic-embed-text", "ollama.embed", "ollama", FAKE.prompt_tokens),
        ("cohere/embed-v4.0", "cohere.embed", "cohere", FAKE.prompt_tokens),
        # Cohere on Bedrock counts tokens only in a response header: the translated record estimates.
        ("bedrock/cohere.embed-english-v3", "bedrock.invoke_model", "aws.bedrock", None),
    ],
)
def test_sdk_embeddings_through_the_gateway(
    gateway_url: str, model: str, served_api: str, provider: str, input_tokens: int | None
) -> None:
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
    if input_tokens is not None:  # reported by the provider (Gemini reports none: the record estimates)
        assert record["usage"]["input_tokens"] == input_tokens
        assert floats.usage.prompt_tokens == input_tokens


def latest_records(gateway_url: str, count: int) -> list[dict[str, Any]]:
    """The records, newest first, once there are ``count``."""

    def records() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = httpx.get(gateway_url + "/logs").json()["data"]
        return data if len(data) >= count else None

    return eventually(records, f"{count} records")


def latest_record(gateway_url: str, count: int) -> dict[str, Any]:
    return latest_records(gateway_url, count)[0]


def test_sdk_embeddings_through_the_gateway_to_bedrock_titan(gateway_url: str) -> None:
    model = "bedrock/amazon.titan-embed-text-v2:0"
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key="client-key", max_retries=0) as client:
        packed = client.embeddings.create(model=model, input="a cat", dimensions=4)
        floats = client.embeddings.create(model=model, input=["a cat"], encoding_format="float")
        with pytest.raises(openai.BadRequestError, match="one input per request") as refused:
            client.embeddings.create(model=model, input=["a cat", "a dog"])
    assert len(packed.data) == 1 and len(packed.data[0].embedding) == 4
    assert len(floats.data[0].embedding) == FAKE.embedding_dimensions
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding[:4])
    assert floats.usage.prompt_tokens == FAKE.prompt_tokens
    assert refused.value.status_code == 400
    refused_record, record = latest_records(gateway_url, 3)[:2]
    assert refused_record["status"] == 400  # refused before going upstream
    assert (record["api"], record["served_api"], record["provider"], record["status"]) == (
        "openai.embeddings",
        "bedrock.invoke_model",
        "aws.bedrock",
        200,
    )
    assert record["usage"]["input_tokens"] == FAKE.prompt_tokens


def test_native_embedding_endpoints_are_observed(gateway_url: str) -> None:
    """Called natively, Cohere's /v2/embed and Bedrock's InvokeModel of an embedding model are
    recorded with their token counts (Cohere on Bedrock: from the response header)."""
    cohere = httpx.post(
        gateway_url + "/cohere/v2/embed",
        json={"model": "embed-v4.0", "texts": ["a cat"], "input_type": "search_query", "embedding_types": ["float"]},
    )
    assert cohere.status_code == 200 and len(cohere.json()["embeddings"]["float"]) == 1
    record = latest_record(gateway_url, 1)
    assert (record["api"], record["operation"], record["usage"]["input_tokens"]) == (
        "cohere.embed",
        "embeddings",
        FAKE.prompt_tokens,
    )
    bedrock = httpx.post(
        gateway_url + "/bedrock/model/cohere.embed-english-v3/invoke",
        json={"texts": ["a cat", "a dog"], "input_type": "search_query"},
    )
    assert bedrock.status_code == 200 and len(bedrock.json()["embeddings"]) == 2
    record = latest_record(gateway_url, 2)
    assert (record["api"], record["operation"], record["response_model"], record["usage"]["input_tokens"]) == (
        "bedrock.invoke_model",
        "embeddings",
        "cohere.embed-english-v3",
        FAKE.prompt_tokens,
    )
