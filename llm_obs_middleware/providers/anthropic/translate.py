"""OpenAI Chat Completions <-> Anthropic Messages (``POST /v1/messages``, plain and SSE).

Request: system/developer messages become ``system``; tool calls become ``tool_use`` blocks and tool
messages ``tool_result`` blocks (consecutive results share one user turn); images by URL or base64
data URL become ``image`` blocks; ``max_tokens`` is required by Anthropic, so an absent limit sends
:data:`DEFAULT_MAX_TOKENS`. The answer's way back is in ``translate_response``.
https://docs.anthropic.com/en/api/messages
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_obs_middleware.providers._translate_common import (
    text_only,
    tool_choice_mode,
    tool_choice_name,
    tool_declaration,
    user_parts,
)
from llm_obs_middleware.providers.anthropic.translate_response import (
    AnthropicStream,
    openai_answer,
    openai_error_answer,
)
from llm_obs_middleware.providers.openai.chat_shapes import ChatMessage, ChatRequest, encode
from llm_obs_middleware.providers.translate_base import (
    OPENAI_ONLY,
    ChatDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedParams,
    UnsupportedRule,
    UpstreamRequest,
    arguments_object,
    data_url,
)

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicTranslator"]

DEFAULT_MAX_TOKENS = 4096
"""Sent as ``max_tokens`` when the OpenAI request sets no limit (Anthropic requires one)."""
ANTHROPIC_VERSION = b"2023-06-01"
# OpenAI parameters Anthropic has no equivalent for (the drop/error rule applies to them).
_UNSUPPORTED = (
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    *OPENAI_ONLY,
)
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


# --- request ----------------------------------------------------------------------------------------


def _user_blocks(message: ChatMessage, skipped: UnsupportedParams) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for kind, value in user_parts(content, skipped):
        if kind == "text":
            blocks.append({"type": "text", "text": value})
            continue
        inline = data_url(value)
        if inline is None:
            source = {"type": "url", "url": value}
        else:
            source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
        blocks.append({"type": "image", "source": source})
    return blocks


def _assistant_blocks(message: ChatMessage) -> str | list[dict[str, Any]]:
    text = text_only(message, "assistant")
    if not message.tool_calls:
        return text
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_object(call.function.arguments, call.id),
            }
        )
    return blocks


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the user turn collecting consecutive tool results
    for message in chat.messages:
        role = message.role
        if role == "tool":
            # Anthropic wants every result of one assistant turn in the next user turn.
            if results is None:
                results = []
                turns.append({"role": "user", "content": results})
            result_text = text_only(message, "tool")
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": result_text})
            continue
        if role == "user" and results is not None:  # a user message right after tool results joins their turn
            content = _user_blocks(message, skipped)
            results.extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
            results = None
            continue
        results = None
        if role in ("system", "developer"):
            system.append({"type": "text", "text": text_only(message, role)})
        elif role == "user":
            turns.append({"role": "user", "content": _user_blocks(message, skipped)})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": _assistant_blocks(message)})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to anthropic", param="messages")
    return system, turns


class AnthropicTranslator(ChatDecoding):
    """OpenAI Chat Completions to Anthropic Messages and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = UnsupportedParams("anthropic")
        skipped.check(chat, _UNSUPPORTED)
        system, turns = _messages(chat, skipped)
        limit = chat.output_limit or DEFAULT_MAX_TOKENS
        body: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": limit}
        if system:
            body["system"] = system[0]["text"] if len(system) == 1 else system
        if chat.stream:
            body["stream"] = True
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.top_p is not None:
            body["top_p"] = chat.top_p
        if chat.stop_list:
            body["stop_sequences"] = chat.stop_list
        if chat.user:
            body["metadata"] = {"user_id": chat.user}
        if chat.tools:
            body["tools"] = [tool_declaration(tool.function, "input_schema") for tool in chat.tools]
        choice = self._tool_choice(chat)
        if choice is not None:
            body["tool_choice"] = choice
        format_ = chat.response_format
        if format_ is not None and format_.type != "text":
            skipped.add("response_format")
        dropped = skipped.resolve(unsupported)
        return UpstreamRequest("/v1/messages", encode(body), [(b"anthropic-version", ANTHROPIC_VERSION)], dropped)

    @staticmethod
    def _tool_choice(chat: ChatRequest) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None:
            serial = chat.tools and chat.parallel_tool_calls is False
            result: dict[str, Any] | None = {"type": "auto"} if serial else None
        elif isinstance(choice, str):
            result = {"type": tool_choice_mode(choice, _TOOL_CHOICE)}
        else:
            result = {"type": "tool", "name": tool_choice_name(chat)}
        if result is not None and chat.parallel_tool_calls is False and result["type"] != "none":
            result["disable_parallel_tool_use"] = True
        return result

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        return openai_answer(body, context)

    def stream(self, context: ResponseContext) -> AnthropicStream:
        return AnthropicStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        return openai_error_answer(status, body, retry_after)
