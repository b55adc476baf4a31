"""``tool_choice`` as each provider takes it: a named tool is forced natively, a malformed choice is a 400."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_obs_middleware.providers.translators import TranslationError, decode_chat_request, translator_for

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def request(provider: str, tool_choice: Any) -> dict[str, Any]:
    translator = translator_for(provider, "openai.chat_completions")
    assert translator is not None
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": tool_choice}
    upstream = translator.request(decode_chat_request(json.dumps(body).encode()), "m", unsupported="error")
    parsed: dict[str, Any] = json.loads(upstream.body)
    return parsed


def test_a_named_tool_is_forced_in_each_providers_shape() -> None:
    assert request("anthropic", NAMED)["tool_choice"] == {"type": "tool", "name": "get_weather"}
    config = request("gemini", NAMED)["toolConfig"]["functionCallingConfig"]
    assert config == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    assert request("bedrock", NAMED)["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "gemini"])
def test_a_named_choice_without_a_function_is_rejected(provider: str) -> None:
    with pytest.raises(TranslationError, match=r"needs function\.name") as raised:
        request(provider, {"type": "function"})
    assert raised.value.param == "tool_choice"


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_an_unknown_tool_choice_mode_is_rejected(provider: str) -> None:
    with pytest.raises(TranslationError, match="'sometimes' is not auto, required or none") as raised:
        request(provider, "sometimes")
    assert raised.value.param == "tool_choice"
