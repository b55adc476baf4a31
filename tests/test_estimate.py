"""Token estimates when a provider reports no usage: tiktoken for OpenAI-family models, characters/4 elsewhere.

The tiktoken path runs with a small byte-level ``tiktoken.Encoding`` built here (one merge, ``lo``),
so every count below can be checked by hand: "hello" is h, e, l, lo = 4 tokens, a space is 1.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

import pytest
import tiktoken

from llm_obs_middleware.records import estimate as _estimate
from llm_obs_middleware.records.estimate import TokenEstimator
from llm_obs_middleware.records.schema import NormalizedResponse, ToolCall, Usage


@pytest.fixture
def encoding() -> tiktoken.Encoding:
    ranks = {bytes([byte]): byte for byte in range(256)}
    ranks[b"lo"] = 256
    return tiktoken.Encoding("test_bytes_lo", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={})


@pytest.fixture
def estimator(encoding: tiktoken.Encoding) -> TokenEstimator:
    return TokenEstimator(encodings={"o200k_base": encoding, "cl100k_base": encoding}, load_encodings=False)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


CHAT = body(
    model="gpt-4o-mini",
    messages=[
        {"role": "system", "content": "hello"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello hello"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
    ],
    temperature=0.2,
)


def test_chat_input_with_tiktoken(estimator: TokenEstimator) -> None:
    usage = estimator.estimate("gpt-4o-mini", "chat", CHAT, NormalizedResponse(output_chars=0))
    # "hello" (4) + "hello hello" (4 + 1 + 4); 2 messages x 4 + 3 for the reply; roles, types and the
    # image URL are not text the model reads.
    assert usage == Usage(input_tokens=4 + 9 + 2 * 4 + 3, output_tokens=0, total_tokens=24)


def test_chat_input_with_the_heuristic(estimator: TokenEstimator) -> None:
    usage = estimator.estimate("claude-sonnet-4-20250514", "chat", CHAT, NormalizedResponse(output_chars=10))
    # ceil((5 + 11) / 4) = 4, plus the same message overhead; output ceil(10 / 4) = 3.
    assert usage == Usage(input_tokens=4 + 11, output_tokens=3, total_tokens=18)


def test_output_with_tiktoken_counts_tool_calls_and_captured_text(estimator: TokenEstimator) -> None:
    response = NormalizedResponse(
        tool_calls=[ToolCall(name="lo", arguments="hello")],
        output_text="hello",
        output_chars=2 + 5 + 5 + 8,  # tool name, arguments, text, and 8 characters of reasoning not kept
    )
    usage = estimator.estimate("gpt-4o", "chat", body(messages=[]), response)
    assert usage is not None
    # "lo" (1) + "hello" (4) + "hello" (4) + ceil(8 / 4) = 11
    assert usage.output_tokens == 11
    assert usage.input_tokens == 0


def test_output_without_capture_is_sized_by_characters(estimator: TokenEstimator) -> None:
    usage = estimator.estimate("gpt-4o", "chat", body(messages=[]), NormalizedResponse(output_chars=9))
    assert usage is not None and usage.output_tokens == 3


def test_embeddings_strings_and_token_ids(estimator: TokenEstimator) -> None:
    strings = estimator.estimate(
        "text-embedding-3-small", "embeddings", body(input=["hello", "lo lo"]), NormalizedResponse()
    )
    assert strings == Usage(input_tokens=4 + 3, total_tokens=7)
    ids = estimator.estimate("text-embedding-3-small", "embeddings", body(input=[1, 2, 3]), NormalizedResponse())
    assert ids == Usage(input_tokens=3, total_tokens=3)
    batch = estimator.estimate("text-embedding-3-small", "embeddings", body(input=[[1, 2], [3]]), NormalizedResponse())
    assert batch == Usage(input_tokens=3, total_tokens=3)


def test_responses_api_input_and_instructions(estimator: TokenEstimator) -> None:
    request = body(
        model="o4-mini",
        instructions="lo",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}],
    )
    usage = estimator.estimate("o4-mini", "chat", request, NormalizedResponse())
    assert usage is not None and usage.input_tokens == 1 + 4 + 4 + 3  # 1 message
    plain = estimator.estimate("o4-mini", "chat", body(input="hello"), NormalizedResponse())
    assert plain is not None and plain.input_tokens == 4


def test_tools_count_as_their_json(estimator: TokenEstimator) -> None:
    tools = [{"type": "function", "function": {"name": "lo"}}]
    usage = estimator.estimate("gpt-4o", "chat", body(messages=[], tools=tools), NormalizedResponse())
    compact = json.dumps(tools, separators=(",", ":"))
    assert usage is not None and usage.input_tokens == len(compact) - 1  # bytes, "lo" merged once


def test_anthropic_and_gemini_shapes_use_the_heuristic(estimator: TokenEstimator) -> None:
    anthropic = body(
        system="You are terse.", messages=[{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]
    )
    usage = estimator.estimate("claude-3-5-haiku-latest", "chat", anthropic, NormalizedResponse())
    assert usage is not None and usage.input_tokens == -(-(14 + 8) // 4) + 4 + 3
    gemini = body(contents=[{"role": "user", "parts": [{"text": "Hello Gemini"}, {"inlineData": {"data": "AAAA"}}]}])
    usage = estimator.estimate("gemini-2.5-flash", "chat", gemini, NormalizedResponse())
    assert usage is not None and usage.input_tokens == 3 + 4 + 3


def test_not_a_json_object(estimator: TokenEstimator) -> None:
    assert estimator.estimate("gpt-4o", "chat", b"not json", NormalizedResponse()) is None
    assert estimator.estimate("gpt-4o", "chat", b"[1, 2]", NormalizedResponse()) is None


def test_text_with_special_tokens_is_counted_as_text(estimator: TokenEstimator, encoding: tiktoken.Encoding) -> None:
    usage = estimator.estimate("gpt-4o", "embeddings", body(input="<|endoftext|>"), NormalizedResponse())
    assert usage is not None and usage.input_tokens == len("<|endoftext|>")


def test_encodings_load_in_the_background(encoding: tiktoken.Encoding, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def get_encoding(name: str) -> tiktoken.Encoding:
        threads.append(threading.current_thread())
        assert name == "o200k_base"
        assert release.wait(5)  # a slow download
        return encoding

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    estimator = TokenEstimator()
    request = body(input="hello")
    first = estimator.estimate("gpt-4o", "embeddings", request, NormalizedResponse())
    assert first is not None and first.input_tokens == 2  # the heuristic while loading: ceil(5 / 4)
    release.set()
    [thread] = threads
    thread.join(5)
    assert thread.name == "llm-obs-tiktoken-o200k_base" and thread is not threading.main_thread()
    second = estimator.estimate("gpt-4o", "embeddings", request, NormalizedResponse())
    assert second is not None and second.input_tokens == 4
    estimator.estimate("gpt-4o-mini", "embeddings", request, NormalizedResponse())
    assert len(threads) == 1  # loaded once


def test_unavailable_encodings_fall_back_to_the_heuristic(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def offline(name: str) -> tiktoken.Encoding:
        raise OSError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    estimator = TokenEstimator()
    with caplog.at_level(logging.INFO, logger="llm_obs_middleware.estimate"):
        estimator.preload(("o200k_base",))
    assert "o200k_base is unavailable (no network)" in caplog.text
    usage = estimator.estimate("gpt-4o", "embeddings", body(input="hello"), NormalizedResponse())
    assert usage is not None and usage.input_tokens == 2


def test_without_the_tiktoken_extra_every_model_uses_the_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken.model", None)  # "import tiktoken.model" now raises ImportError
    estimator = TokenEstimator()
    assert estimator.encoding_for("gpt-4o") is None
    usage = estimator.estimate("gpt-4o", "embeddings", body(input="hello"), NormalizedResponse())
    assert usage is not None and usage.input_tokens == 2


def test_not_loading_encodings(estimator: TokenEstimator) -> None:
    lazy = TokenEstimator(load_encodings=False)
    assert lazy.encoding_for("gpt-4o") is None
    assert lazy.encoding_for("claude-sonnet-4") is None
    assert estimator.encoding_for("gpt-4o") is not None
    assert estimator.encoding_for("gpt-3.5-turbo") is not None  # cl100k_base


def test_default_estimator_is_shared() -> None:
    assert _estimate.default_estimator() is _estimate.default_estimator()


def test_preload_keeps_given_encodings_and_the_model_cache_is_bounded(
    estimator: TokenEstimator, encoding: tiktoken.Encoding, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: pytest.fail("loaded again"))
    estimator.preload()  # both encodings were given: nothing to load
    assert estimator.encoding_for("gpt-4o") is encoding
    monkeypatch.setattr(_estimate, "_MAX_MODELS", 3)
    for i in range(10):
        estimator.encoding_for(f"gpt-4o-{i}")
    assert len(estimator._names) <= 3


def test_deeply_nested_bodies_are_cut_off(estimator: TokenEstimator) -> None:
    nested: Any = "hello"
    for _ in range(200):
        nested = [nested]
    usage = estimator.estimate("claude-3", "embeddings", body(input=[nested, "lo"]), NormalizedResponse())
    assert usage == Usage(input_tokens=1, total_tokens=1)  # only "lo": ceil(2 / 4)
