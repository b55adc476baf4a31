"""Images as references in captured messages, and the vendor ``extra`` map, for every adapter.

An image sent inline must never reach a record as its base64 payload: it becomes ``sha256:<hex>`` of
the decoded bytes and their size; an image given by URL keeps its URL. Vendor extras are namespaced
``{vendor}.{field}`` (response, headers) and ``{vendor}.request.{field}`` (request).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import msgspec
import pytest

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.providers.anthropic.adapter import MESSAGES, AnthropicAdapter
from llm_obs_middleware.providers.bedrock.adapter import BedrockAdapter
from llm_obs_middleware.providers.cohere.adapter import CHAT as COHERE_CHAT, CohereAdapter
from llm_obs_middleware.providers.gemini.adapter import GENERATE, STREAM_GENERATE, GeminiAdapter
from llm_obs_middleware.providers.ollama.adapter import CHAT as OLLAMA_CHAT, GENERATE as OLLAMA_GENERATE, OllamaAdapter
from llm_obs_middleware.providers.openai.adapter import CHAT, RESPONSES, OpenAIAdapter
from llm_obs_middleware.records.build import build_record
from llm_obs_middleware.records.schema import ImageRef, Message, NormalizedRequest, ToolCall

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # stands in for an image: any bytes will do
PNG_B64 = base64.b64encode(PNG).decode()
PNG_REF = ImageRef(ref="sha256:" + hashlib.sha256(PNG).hexdigest(), media_type="image/png", size_bytes=len(PNG))
URL = "https://example.com/cat.jpg"


def captured(adapter: Any, endpoint: Any, body: dict[str, Any]) -> list[Message]:
    request: NormalizedRequest = adapter.decode_request(endpoint, json.dumps(body).encode(), capture_content=True)
    assert request.messages is not None
    # Whatever the provider, the payload never reaches what sinks encode.
    assert PNG_B64[:64] not in msgspec.json.encode(request.messages).decode()
    return request.messages


def images(messages: list[Message]) -> list[ImageRef]:
    return [image for message in messages for image in message.images]


# --- images ---------------------------------------------------------------------------------------


def test_openai_image_url_and_data_url() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": URL, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            }
        ],
    }
    [message] = captured(OpenAIAdapter(), CHAT, body)
    assert message.content == "what is this?"
    assert message.images == [ImageRef(ref=URL), PNG_REF]


def test_openai_responses_input_items() -> None:
    body = {
        "model": "gpt-5",
        "instructions": "be brief",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "and this?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}"},
                    {"type": "input_image", "file_id": "file-abc"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "zoom", "arguments": '{"x": 2}'},
            {"type": "function_call_output", "call_id": "c1", "output": "zoomed"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "t"}]},
            {"type": "reasoning", "summary": []},
        ],
    }
    system, user, call, result, listed = captured(OpenAIAdapter(), RESPONSES, body)
    assert (system.role, system.content) == ("system", "be brief")
    assert (user.role, user.content, user.images) == ("user", "and this?", [PNG_REF, ImageRef(ref="file:file-abc")])
    assert call.tool_calls == [ToolCall(id="c1", name="zoom", arguments='{"x": 2}')]
    assert (result.role, result.content, result.tool_call_id) == ("tool", "zoomed", "c1")
    assert json.loads(listed.content or "") == [{"type": "input_text", "text": "t"}]


def test_anthropic_base64_url_file_and_tool_result_images() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "url", "url": URL}},
                    {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                    {"type": "text", "text": "compare"},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "screenshot:"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                        ],
                    }
                ],
            },
        ],
    }
    first, _, result = captured(AnthropicAdapter(), MESSAGES, body)
    assert first.images == [PNG_REF, ImageRef(ref=URL), ImageRef(ref="file:file_011")]
    assert first.content == "compare"
    assert (result.tool_call_id, result.content, result.images) == ("t1", "screenshot:", [PNG_REF])


@pytest.mark.parametrize("spelling", ["camel", "snake"])
def test_gemini_inline_and_file_data(spelling: str) -> None:
    inline, file, mime, data, uri = (
        ("inlineData", "fileData", "mimeType", "data", "fileUri")
        if spelling == "camel"
        else ("inline_data", "file_data", "mime_type", "data", "file_uri")
    )
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "describe"},
                    {inline: {mime: "image/png", data: PNG_B64}},
                    {file: {mime: "image/jpeg", uri: "gs://bucket/cat.jpg"}},
                ],
            }
        ]
    }
    [message] = captured(GeminiAdapter(), GENERATE, body)
    assert message.images == [PNG_REF, ImageRef(ref="gs://bucket/cat.jpg", media_type="image/jpeg")]


def test_bedrock_image_bytes_and_s3() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "and this?"},
                    {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
                    {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://b/cat.jpg"}}}},
                ],
            }
        ]
    }
    adapter = BedrockAdapter(environ={})
    endpoint = adapter.match("POST", "/model/amazon.nova-lite-v1%3A0/converse")
    [message] = captured(adapter, endpoint, body)
    assert message.images == [PNG_REF, ImageRef(ref="s3://b/cat.jpg", media_type="image/jpeg")]


def test_ollama_chat_and_generate_images() -> None:
    no_type = ImageRef(ref=PNG_REF.ref, size_bytes=len(PNG))  # Ollama sends no media type
    chat = {"model": "llava", "messages": [{"role": "user", "content": "what is it?", "images": [PNG_B64]}]}
    [message] = captured(OllamaAdapter(), OLLAMA_CHAT, chat)
    assert (message.content, message.images) == ("what is it?", [no_type])
    generate = {"model": "llava", "prompt": "", "images": [PNG_B64, PNG_B64]}
    [message] = captured(OllamaAdapter(), OLLAMA_GENERATE, generate)
    assert (message.role, message.content, message.images) == ("user", None, [no_type, no_type])


def test_cohere_image_url() -> None:
    body = {
        "model": "command-a-vision-07-2025",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            }
        ],
    }
    [message] = captured(CohereAdapter(), COHERE_CHAT, body)
    assert (message.content, message.images) == ("what?", [PNG_REF])


def test_non_base64_data_url_is_digested_too() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%2F%3E"}}],
            }
        ],
    }
    [message] = captured(OpenAIAdapter(), CHAT, body)
    digest = hashlib.sha256(b"<svg/>").hexdigest()
    assert message.images == [ImageRef(ref=f"sha256:{digest}", media_type="image/svg+xml", size_bytes=6)]


def test_images_are_not_captured_without_content_capture() -> None:
    body = {"model": "llava", "messages": [{"role": "user", "content": "hi", "images": [PNG_B64]}]}
    request = OllamaAdapter().decode_request(OLLAMA_CHAT, json.dumps(body).encode(), capture_content=False)
    assert request.messages is None


# --- extras ---------------------------------------------------------------------------------------


def observe(adapter: Any, endpoint: Any, body: bytes, *, streamed: bool, exchange: Exchange | None = None) -> Any:
    exchange = exchange or Exchange({})
    observer = adapter.observer(endpoint, exchange, streamed=streamed, status=200)
    for i in range(0, len(body), 7):  # any chunking
        observer.feed(body[i : i + 7], i + 1)
    return observer.finish()


def test_request_extras() -> None:
    openai_body = b'{"model": "gpt-4o", "messages": [], "service_tier": "flex"}'
    assert OpenAIAdapter().decode_request(CHAT, openai_body, capture_content=False).extra == {
        "openai.request.service_tier": "flex"
    }
    responses_body = b'{"model": "gpt-5", "input": "hi", "service_tier": "priority"}'
    assert OpenAIAdapter().decode_request(RESPONSES, responses_body, capture_content=False).extra == {
        "openai.request.service_tier": "priority"
    }
    anthropic_body = b'{"model": "claude", "max_tokens": 5, "messages": [], "service_tier": "standard_only"}'
    assert AnthropicAdapter().decode_request(MESSAGES, anthropic_body, capture_content=False).extra == {
        "anthropic.request.service_tier": "standard_only"
    }
    adapter = BedrockAdapter(environ={})
    endpoint = adapter.match("POST", "/model/m/converse")
    assert endpoint is not None
    bedrock_body = b'{"messages": [], "performanceConfig": {"latency": "optimized"}}'
    assert adapter.decode_request(endpoint, bedrock_body, capture_content=False).extra == {
        "bedrock.request.performance_latency": "optimized"
    }
    assert OpenAIAdapter().decode_request(CHAT, b'{"model": "m", "messages": []}', capture_content=False).extra == {}


def test_openai_stream_extras_and_responses_service_tier() -> None:
    chunks = [
        {"id": "c", "model": "gpt-4o", "system_fingerprint": "fp_1", "service_tier": "default", "choices": []},
        {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
    ]
    stream = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"
    result = observe(OpenAIAdapter(), CHAT, stream, streamed=True)
    assert result.extra == {"openai.system_fingerprint": "fp_1", "openai.service_tier": "default"}
    body = b'{"id": "r", "model": "gpt-5", "status": "completed", "output": [], "service_tier": "flex"}'
    assert observe(OpenAIAdapter(), RESPONSES, body, streamed=False).extra == {"openai.service_tier": "flex"}


def test_anthropic_stream_service_tier() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "model": "claude",
                    "usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "priority"},
                },
            },
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    result = observe(AnthropicAdapter(), MESSAGES, stream, streamed=True)
    assert result.extra == {"anthropic.service_tier": "priority"}
    assert result.usage.output_tokens == 4  # the tier survived the usage merge of message_delta


def test_gemini_safety_ratings_latest_win() -> None:
    def chunk(probability: str, finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "index": 0,
            "content": {"parts": [{"text": "x"}]},
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": probability},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE", "blocked": finish == "SAFETY"},
            ],
        }
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate]}

    stream = b"".join(
        b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in (chunk("NEGLIGIBLE"), chunk("LOW", "SAFETY"))
    )
    result = observe(GeminiAdapter(), STREAM_GENERATE, stream, streamed=True)
    assert result.extra == {
        "gemini.safety_ratings": ["HARM_CATEGORY_HARASSMENT:LOW", "HARM_CATEGORY_HATE_SPEECH:NEGLIGIBLE:BLOCKED"]
    }
    assert result.finish_reason == "content_filter"


def test_bedrock_stream_latency() -> None:
    from llm_obs_middleware.testing._fake_bedrock import event_headers, frame

    frames = [
        frame(event_headers("messageStop"), b'{"stopReason": "end_turn"}'),
        frame(
            event_headers("metadata"),
            b'{"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}, "metrics": {"latencyMs": 321}}',
        ),
    ]
    adapter = BedrockAdapter(environ={})
    endpoint = adapter.match("POST", "/model/m/converse-stream")
    result = observe(adapter, endpoint, b"".join(frames), streamed=True)
    assert result.extra == {"bedrock.latency_ms": 321}
    assert result.completed


def test_ollama_durations_from_the_final_line() -> None:
    lines = [
        {"model": "qwen3", "message": {"role": "assistant", "content": "hi"}, "done": False},
        {
            "model": "qwen3",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 5_000_000,
            "load_duration": 2_000_000,
            "prompt_eval_count": 3,
            "eval_count": 1,
            "eval_duration": 900_000,
        },
    ]
    stream = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    result = observe(OllamaAdapter(), OLLAMA_CHAT, stream, streamed=True)
    assert result.extra == {
        "ollama.total_duration_ns": 5_000_000,
        "ollama.load_duration_ns": 2_000_000,
        "ollama.eval_duration_ns": 900_000,
    }


def test_record_merges_request_response_and_header_extras() -> None:
    exchange = Exchange({"path": "/anthropic/v1/messages"})
    exchange.is_llm = True
    body = b'{"model": "claude", "max_tokens": 5, "messages": [], "service_tier": "auto"}'
    exchange.request = AnthropicAdapter().decode_request(MESSAGES, body, capture_content=False)
    exchange.response_headers = [(b"content-type", b"application/json"), (b"Request-Id", b"req_1")]
    exchange.header_extras = AnthropicAdapter().response_header_extras
    exchange.status = 200
    message = msgspec.json.encode(
        {
            "id": "m",
            "model": "claude",
            "content": [],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1, "service_tier": "standard"},
        }
    )
    exchange.response = observe(AnthropicAdapter(), MESSAGES, message, streamed=False)
    record = build_record(exchange, None)
    assert record.extra == {
        "anthropic.request.service_tier": "auto",
        "anthropic.service_tier": "standard",
        "anthropic.request_id": "req_1",
    }
    assert json.loads(msgspec.json.encode(record))["extra"] == record.extra  # what /logs and the log store get


def test_record_extra_is_empty_for_plain_traffic() -> None:
    exchange = Exchange({})
    exchange.response_headers = [(b"x-request-id", b"ours")]  # no adapter asked for headers
    assert build_record(exchange, None).extra == {}
