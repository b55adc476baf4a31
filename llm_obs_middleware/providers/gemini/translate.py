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

from llm_obs_middleware.providers.gemini import wire
from llm_obs_middleware.providers.gemini.translate_response import GeminiStream, completion
from llm_obs_middleware.providers.openai.chat_shapes import ChatMessage, ChatRequest, encode, present
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
_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


# --- request ----------------------------------------------------------------------------------------


def _text(message: ChatMessage, where: str) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise TranslationError(f"{where} messages may hold only text parts, not {part.type!r}", param="messages")
        texts.append(part.text or "")
    return "".join(texts)


def _user_parts(message: ChatMessage, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append({"text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            url = part.image_url.url
            inline = data_url(url)
            if inline is not None:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                guessed = mimetypes.guess_type(url.partition("?")[0])[0]
                file_data = {"fileUri": url, **({"mimeType": guessed} if guessed else {})}
                parts.append({"fileData": file_data})
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return parts


def _function_response(text: str) -> msgspec.Raw | dict[str, str]:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            _decode_object(stripped)
            return msgspec.Raw(stripped.encode())
        except msgspec.DecodeError:
            pass
    return {"content": text}


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
            response = _function_response(_text(message, "tool"))
            results.append({"functionResponse": {"name": names[call_id], "response": response}})
            continue
        if role == "user" and results is not None:  # a user message right after tool results joins their turn
            results.extend(_user_parts(message, skipped))
            results = None
            continue
        results = None
        if role in ("system", "developer"):
            system.append({"text": _text(message, role)})
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(message, skipped)})
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            text = _text(message, "assistant")
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
        skipped = UnsupportedParams("gemini")
        skipped.check(chat, _UNSUPPORTED)
        if chat.parallel_tool_calls is False:
            skipped.add("parallel_tool_calls")
        system, contents = _contents(chat, skipped)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        config = self._generation_config(chat, skipped)
        if config:
            body["generationConfig"] = config
        if chat.tools:
            declarations = []
            for tool in chat.tools:
                function = tool.function
                declaration: dict[str, Any] = {"name": function.name}
                if function.description:
                    declaration["description"] = function.description
                schema = function.parameters if present(function.parameters) else _EMPTY_SCHEMA
                declaration["parametersJsonSchema"] = schema
                declarations.append(declaration)
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
        for ours, theirs in (
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("n", "candidateCount"),
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ):
            value = getattr(chat, ours)
            if value is not None:
                config[theirs] = value
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
                if format_.json_schema is not None and present(format_.json_schema.schema):
                    config["responseJsonSchema"] = format_.json_schema.schema
            elif format_.type != "text":
                skipped.add("response_format")
        return config

    @staticmethod
    def _calling_config(chat: ChatRequest) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None:
            return None
        if isinstance(choice, str):
            if choice not in _CALLING_MODE:
                raise TranslationError(f"tool_choice {choice!r} is not auto, required or none", param="tool_choice")
            return {"mode": _CALLING_MODE[choice]}
        if choice.function is None:
            raise TranslationError("tool_choice: a named choice needs function.name", param="tool_choice")
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}

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
