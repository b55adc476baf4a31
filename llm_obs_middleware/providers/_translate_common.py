"""The OpenAI side of the request mappings the chat translators share.

Each helper reads the client's OpenAI request (messages, tools, ``tool_choice``, sampling parameters)
and gives plain values; the native shapes they go into stay in each provider's ``translate*.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from llm_obs_middleware.providers.openai.chat_shapes import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    FunctionDefinition,
    present,
)
from llm_obs_middleware.providers.translate_base import TranslationError, UnsupportedParams

__all__ = [
    "EMPTY_SCHEMA",
    "copy_params",
    "function_tools",
    "json_object",
    "plain_role",
    "response_schema",
    "text_only",
    "tool_choice_mode",
    "tool_choice_name",
    "tool_declaration",
    "tool_schema",
    "unsupported_params",
    "user_parts",
]

EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')
"""A tool's parameters when the client declares none (providers want an object schema)."""
_PLAIN_ROLES = frozenset(("system", "user", "assistant", "tool"))
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def unsupported_params(provider: str, chat: ChatRequest, names: Iterable[str]) -> UnsupportedParams:
    """The request's parameters among ``names`` (see :meth:`UnsupportedParams.check`), then
    ``parallel_tool_calls: false`` for providers that cannot make tool calls one at a time."""
    skipped = UnsupportedParams(provider)
    skipped.check(chat, names)
    if chat.parallel_tool_calls is False:
        skipped.add("parallel_tool_calls")
    return skipped


def tool_schema(function: FunctionDefinition) -> msgspec.Raw:
    """A tool's JSON Schema as the client sent it, or an empty object schema."""
    return function.parameters if present(function.parameters) else EMPTY_SCHEMA


def tool_declaration(function: FunctionDefinition, schema_key: str) -> dict[str, Any]:
    """``{"name", "description"?, <schema_key>: schema}``: a tool as most providers declare one."""
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    declaration[schema_key] = tool_schema(function)
    return declaration


def function_tools(chat: ChatRequest) -> list[dict[str, Any]]:
    """The request's tools in OpenAI's own shape (for providers that take it as is)."""
    return [
        {"type": "function", "function": tool_declaration(tool.function, "parameters")} for tool in chat.tools or ()
    ]


def copy_params(chat: ChatRequest, names: Iterable[tuple[str, str]], into: dict[str, Any]) -> None:
    """Copy each set request attribute (``ours``) into ``into`` under the provider's name (``theirs``)."""
    for ours, theirs in names:
        value = getattr(chat, ours)
        if value is not None:
            into[theirs] = value


def tool_choice_name(chat: ChatRequest) -> str:
    """The function a named ``tool_choice`` forces (:class:`TranslationError` when it names none)."""
    choice = chat.tool_choice
    function = None if choice is None or isinstance(choice, str) else choice.function
    if function is None:
        raise TranslationError("tool_choice: a named choice needs function.name", param="tool_choice")
    return function.name


def tool_choice_mode(choice: str, modes: dict[str, str]) -> str:
    """The provider's mode for ``auto`` / ``required`` / ``none`` (:class:`TranslationError` for another)."""
    mode = modes.get(choice)
    if mode is None:
        raise TranslationError(f"tool_choice {choice!r} is not auto, required or none", param="tool_choice")
    return mode


def response_schema(chat: ChatRequest) -> msgspec.Raw | None:
    """The JSON Schema of ``response_format: json_schema``, when one was sent."""
    format_ = chat.response_format
    if format_ is None or format_.json_schema is None or not present(format_.json_schema.schema):
        return None
    return format_.json_schema.schema


def text_only(message: ChatMessage, where: str) -> str:
    """A message's text (:class:`TranslationError` for a part that is not text: ``where`` names the role)."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise TranslationError(f"{where} messages may hold only text parts, not {part.type!r}", param="messages")
        texts.append(part.text or "")
    return "".join(texts)


def user_parts(content: list[ContentPart], skipped: UnsupportedParams) -> list[tuple[str, str]]:
    """``(kind, value)`` of a message's parts: ``("text", text)`` and ``("image_url", url)``; another
    part is noted as unsupported."""
    parts: list[tuple[str, str]] = []
    for part in content:
        if part.type == "text":
            parts.append(("text", part.text or ""))
        elif part.type == "image_url" and part.image_url is not None:
            parts.append(("image_url", part.image_url.url))
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return parts


def plain_role(message: ChatMessage, provider: str) -> str:
    """The role for providers with OpenAI's four (``developer`` is ``system``); another is an error."""
    role = "system" if message.role == "developer" else message.role
    if role not in _PLAIN_ROLES:
        raise TranslationError(f"message role {role!r} cannot be sent to {provider}", param="messages")
    return role


def json_object(text: str) -> msgspec.Raw | None:
    """``text`` as raw JSON when it is a JSON object (a tool result providers take structured), else ``None``."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        _decode_object(stripped)
    except msgspec.DecodeError:
        return None
    return msgspec.Raw(stripped.encode())
