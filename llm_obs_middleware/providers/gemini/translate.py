"""OpenAI Chat Completions <-> Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``.

Request: system/developer messages become ``systemInstruction``; assistant turns are ``model``
contents with ``functionCall`` parts; tool messages become ``functionResponse`` parts (named after
the call they answer; a result that is not a JSON object is sent as ``{"content": <text>}``, as
Gemini wants an object); images by base64 data URL become ``inlineData``, by URL ``fileData``.
Tools are declared with ``parametersJsonSchema`` (the JSON Schema as sent), ``response_format``
maps to ``responseMimeType`` / ``responseJsonSchema``. The answer is translated back by
:mod:`.translate_response`; errors keep Google's ``status`` as the ``code`` and ``RetryInfo`` as
``Retry-After`` (:func:`.wire.retry_after`). https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.providers._translate_common import (
    copy_params,
    json_object,
    response_schema,
    text_only,
    tool_choice_mode,
    tool_choice_name,
    tool_declaration,
    unsupported_params,
    user_parts,
)
from llm_obs_middleware.providers.gemini import wire
from llm_obs_middleware.providers.gemini.translate_response import GeminiStream, completion
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
    openai_error,
    raw_error_message,
)

__all__ = ["GeminiTranslator"]

_UNSUPPORTED = (
    "logprobs",
    *OPENAI_ONLY,
)
_CALLING_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


# --- request ----------------------------------------------------------------------------------------


def _user_parts(message: ChatMessage, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    parts: list[dict[str, Any]] = []
    for kind, value in user_parts(content, skipped):
        if kind == "text":
            parts.append({"text": value})
        elif (inline := data_url(value)) is not None:
            parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
        else:
            guessed = mimetypes.guess_type(value.partition("?")[0])[0]
            parts.append({"fileData": {"fileUri": value, **({"mimeType": guessed} if guessed else {})}})
    return parts


def _function_response(text: str) -> msgspec.Raw | dict[str, str]:
    return json_object(text) or {"content": text}


def _contents(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name (Gemini answers a call by name)
    results: list[dict[str, Any]] | None = None
    for message in chat.messages:
        role = message.role
        if role == "tool":
            if results is None:
                results = []
                contents.append({"role": "user", "parts": results})
            call_id = message.tool_call_id or ""
            if call_id not in names:
                raise TranslationError(
                    f"tool message answers {call_id!r}, which no earlier assistant message called", param="messages"
                )
            response = _function_response(text_only(message, "tool"))
            results.append({"functionResponse": {"name": names[call_id], "response": response}})
            continue
        if role == "user" and results is not None:  # a user message right after tool results joins their turn
            results.extend(_user_parts(message, skipped))
            results = None
            continue
        results = None
        if role in ("system", "developer"):
            system.append({"text": text_only(message, role)})
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(message, skipped)})
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            text = text_only(message, "assistant")
            if text:
                parts.append({"text": text})
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                args = arguments_object(call.function.arguments, call.id)
                parts.append({"functionCall": {"name": call.function.name, "args": args}})
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to gemini", param="messages")
    return system, contents


class GeminiTranslator(ChatDecoding):
    """OpenAI Chat Completions to Gemini generateContent and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = unsupported_params("gemini", chat, _UNSUPPORTED)
        system, contents = _contents(chat, skipped)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        config = self._generation_config(chat, skipped)
        if config:
            body["generationConfig"] = config
        if chat.tools:
            declarations = [tool_declaration(tool.function, "parametersJsonSchema") for tool in chat.tools]
            body["tools"] = [{"functionDeclarations": declarations}]
        calling = self._calling_config(chat)
        if calling is not None:
            body["toolConfig"] = {"functionCallingConfig": calling}
        dropped = skipped.resolve(unsupported)
        name = quote(model.removeprefix("models/"), safe="")  # a client's model name stays one path segment
        method = "streamGenerateContent?alt=sse" if chat.stream else "generateContent"
        path = f"/v1beta/models/{name}:{method}"
        return UpstreamRequest(path, encode(body), [], dropped)

    @staticmethod
    def _generation_config(chat: ChatRequest, skipped: UnsupportedParams) -> dict[str, Any]:
        config: dict[str, Any] = {}
        copy_params(chat, _SAMPLING, config)
        if chat.output_limit is not None:
            config["maxOutputTokens"] = chat.output_limit
        if chat.stop_list:
            config["stopSequences"] = chat.stop_list
        format_ = chat.response_format
        if format_ is not None:
            if format_.type == "json_object":
                config["responseMimeType"] = "application/json"
            elif format_.type == "json_schema":
                config["responseMimeType"] = "application/json"
                schema = response_schema(chat)
                if schema is not None:
                    config["responseJsonSchema"] = schema
            elif format_.type != "text":
                skipped.add("response_format")
        return config

    @staticmethod
    def _calling_config(chat: ChatRequest) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None:
            return None
        if isinstance(choice, str):
            return {"mode": tool_choice_mode(choice, _CALLING_MODE)}
        return {"mode": "ANY", "allowedFunctionNames": [tool_choice_name(chat)]}

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        return completion(body, context)

    def stream(self, context: ResponseContext) -> GeminiStream:
        return GeminiStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        """Google's error (``google.rpc.Status``) in OpenAI's shape; ``Retry-After`` is the router's
        (the header, or the body's ``RetryInfo`` as delta-seconds), else the body's ``RetryInfo``."""
        detail = wire.error_status(body)
        if detail is None:
            return openai_error(status, raw_error_message(body, "gemini", status), None, retry_after)
        message = detail.message or raw_error_message(b"", "gemini", status)
        return openai_error(status, message, detail.status, retry_after or wire.retry_after(detail))
