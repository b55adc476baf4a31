"""OpenAI Chat Completions request -> Bedrock Converse request (see :mod:`.translate` for the whole mapping).

System/developer messages become ``system`` blocks; turns become ``text``, ``image`` (base64 data URLs
only: Converse takes bytes or S3, not URLs), ``toolUse`` and ``toolResult`` blocks (a JSON-object result
as ``json``, anything else as ``text``); consecutive turns of one role are merged, as Converse wants
user and assistant to alternate; sampling goes in ``inferenceConfig``, tools in ``toolConfig``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from llm_obs_middleware.providers._translate_common import json_object, tool_choice_name, tool_schema, user_parts
from llm_obs_middleware.providers.bedrock.wire import ConverseRequest, InferenceConfig, ToolConfig, ToolEntry, ToolSpec
from llm_obs_middleware.providers.openai.chat_shapes import ChatMessage, ChatRequest, encode
from llm_obs_middleware.providers.translate_base import (
    OPENAI_ONLY,
    TranslationError,
    UnsupportedParams,
    UnsupportedRule,
    UpstreamRequest,
    arguments_object,
    data_url,
)

__all__ = ["converse_request"]

_UNSUPPORTED = (
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    *OPENAI_ONLY,
)
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EMPTY = msgspec.Raw(b"{}")


def _blocks(message: ChatMessage, skipped: UnsupportedParams) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for kind, value in user_parts(content, skipped):
        if kind == "text":
            if value:
                blocks.append({"text": value})
            continue
        inline = data_url(value) if message.role == "user" else None
        image_format = _IMAGE_FORMATS.get(inline[0]) if inline is not None else None
        if inline is None or image_format is None:
            skipped.add("messages[].content[].image_url")  # by URL, or not png/jpeg/gif/webp, or not a user's
        else:
            blocks.append({"image": {"format": image_format, "source": {"bytes": inline[1]}}})
    return blocks


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    content = message.content
    text = content if isinstance(content, str) else "".join(part.text or "" for part in content or ())
    structured = json_object(text)
    result: dict[str, Any] = {"text": text or " "} if structured is None else {"json": structured}
    return {"toolResult": {"toolUseId": message.tool_call_id or "", "content": [result]}}


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in chat.messages:
        role = message.role
        if role in ("system", "developer"):
            system.extend(_blocks(message, skipped))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif role == "user":
            blocks = _blocks(message, skipped)
        elif role == "assistant":
            blocks = _blocks(message, skipped)
            for call in message.tool_calls or ():
                arguments = arguments_object(call.function.arguments, call.id)
                blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to bedrock", param="messages")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Converse wants the roles to alternate
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def converse_request(chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
    """The Converse (or ConverseStream) request for an OpenAI chat request."""
    skipped = UnsupportedParams("bedrock")
    skipped.check(chat, _UNSUPPORTED)
    system, turns = _messages(chat, skipped)
    config = InferenceConfig(
        max_tokens=chat.output_limit,
        temperature=chat.temperature,
        top_p=chat.top_p,
        stop_sequences=chat.stop_list or None,
    )
    tool_config = None
    if chat.tools:
        tools = [
            ToolEntry(
                tool_spec=ToolSpec(
                    name=tool.function.name,
                    description=tool.function.description or None,
                    input_schema={"json": tool_schema(tool.function)},
                )
            )
            for tool in chat.tools
        ]
        tool_config = ToolConfig(tools=tools, tool_choice=_tool_choice(chat, skipped))
    body = ConverseRequest(
        messages=[msgspec.Raw(encode(turn)) for turn in turns],
        system=[msgspec.Raw(encode(block)) for block in system] or None,
        inference_config=config if config != InferenceConfig() else None,
        tool_config=tool_config,
    )
    if chat.parallel_tool_calls is False:
        skipped.add("parallel_tool_calls")
    format_ = chat.response_format
    if format_ is not None and format_.type != "text":
        skipped.add("response_format")
    dropped = skipped.resolve(unsupported)
    method = "converse-stream" if chat.stream else "converse"
    # Encoded as botocore encodes a URI label (":" of "...-v1:0" as %3A), so SigV4 signs what is sent.
    return UpstreamRequest(f"/model/{quote(model, safe='')}/{method}", encode(body), [], dropped)


def _tool_choice(chat: ChatRequest, skipped: UnsupportedParams) -> dict[str, msgspec.Raw] | None:
    choice = chat.tool_choice
    if choice is None or choice == "auto":
        return {"auto": _EMPTY} if choice else None
    if choice == "required":
        return {"any": _EMPTY}
    if isinstance(choice, str):
        skipped.add("tool_choice")  # "none": Converse cannot forbid the tools it is given
        return None
    return {"tool": msgspec.Raw(encode({"name": tool_choice_name(chat)}))}
