"""OpenInference attributes for a record's span (opt-in: ``exporters.otlp.openinference``).

Arize Phoenix and other OpenInference backends read their own attribute names rather than the
OpenTelemetry GenAI ones; with these on the same span they show the LLM call natively (kind, model,
token counts with cache details, cost, invocation parameters, session and user, and the messages
when content capture is on). Names follow
https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md and its
``llm.provider``/``llm.system`` value lists; a provider they do not list keeps our name.

The end user id (``user.id``) is exported here because OpenInference groups by it; drop it with
``redact.fields: [user]``, which removes it from records before any sink sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from llm_obs_middleware.records.schema import LLMRecord, Message, Usage

__all__ = ["openinference_attributes"]

_encode = msgspec.json.Encoder().encode

# Our provider names (GenAI ``gen_ai.provider.name`` values) -> OpenInference (llm.provider, llm.system).
_PROVIDERS: Final[dict[str, tuple[str, str | None]]] = {
    "openai": ("openai", "openai"),
    "azure.ai.openai": ("azure", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "aws.bedrock": ("aws", None),
    "gcp.gemini": ("google", "vertexai"),
    "gcp.vertex_ai": ("google", "vertexai"),
    "gcp.gen_ai": ("google", "vertexai"),
    "cohere": ("cohere", "cohere"),
    "mistral_ai": ("mistralai", "mistralai"),
    "x_ai": ("xai", None),
    "deepseek": ("deepseek", None),
}
# OpenInference span kinds by GenAI operation name; anything else is an LLM call.
_KINDS: Final = {"embeddings": "EMBEDDING"}
_PARAMS: Final = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "tool_choice",
    "response_format",
)


def openinference_attributes(record: LLMRecord) -> dict[str, AttributeValue]:
    """The OpenInference attributes of one record; absent values are left out."""
    provider, system = _PROVIDERS.get(record.provider, (record.provider, None))
    attrs: dict[str, AttributeValue] = {
        "openinference.span.kind": _KINDS.get(record.operation, "LLM"),
        "llm.provider": provider,
    }
    if system is not None:
        attrs["llm.system"] = system
    if model := record.response_model or record.requested_model:
        attrs["llm.model_name"] = model
    if record.usage is not None:
        _put_token_counts(attrs, record.usage)
    if (cost := record.cost) is not None:
        attrs["llm.cost.total"] = cost.total_usd
        attrs["llm.cost.prompt"] = cost.input_usd + cost.cache_read_usd + cost.cache_write_usd
        attrs["llm.cost.completion"] = cost.output_usd
    if parameters := _invocation_parameters(record):
        attrs["llm.invocation_parameters"] = _encode(parameters).decode()
    if record.session_id:
        attrs["session.id"] = record.session_id
    if record.user:
        attrs["user.id"] = record.user
    if record.metadata:
        attrs["metadata"] = _encode(record.metadata).decode()
    if record.input_messages is not None:
        _put_input_messages(attrs, record.input_messages)
    if record.output_text is not None:
        attrs["output.value"] = record.output_text
        attrs["output.mime_type"] = "text/plain"
        attrs["llm.output_messages.0.message.role"] = "assistant"
        attrs["llm.output_messages.0.message.content"] = record.output_text
    return attrs


def _put_token_counts(attrs: dict[str, AttributeValue], usage: Usage) -> None:
    """``llm.token_count.*``; the total, when the provider gave none, is input plus output."""
    total = usage.total_tokens
    if total is None and usage.input_tokens is not None and usage.output_tokens is not None:
        total = usage.input_tokens + usage.output_tokens
    # Our input_tokens include cache reads and writes, as OpenInference's prompt count does.
    for key, value in (
        ("llm.token_count.prompt", usage.input_tokens),
        ("llm.token_count.completion", usage.output_tokens),
        ("llm.token_count.total", total),
        ("llm.token_count.prompt_details.cache_read", usage.cache_read_tokens),
        ("llm.token_count.prompt_details.cache_write", usage.cache_write_tokens),
        ("llm.token_count.prompt_details.audio", usage.audio_input_tokens),
        ("llm.token_count.completion_details.reasoning", usage.reasoning_tokens),
        ("llm.token_count.completion_details.audio", usage.audio_output_tokens),
    ):
        if value is not None:
            attrs[key] = value


def _invocation_parameters(record: LLMRecord) -> dict[str, Any]:
    """The request's model, set parameters and streaming flag (``llm.invocation_parameters``, as JSON)."""
    parameters: dict[str, Any] = {}
    if record.requested_model:
        parameters["model"] = record.requested_model
    if record.params is not None:
        for name in _PARAMS:
            if (value := getattr(record.params, name)) is not None:
                parameters[name] = value
    if record.streamed:
        parameters["stream"] = True
    return parameters


def _put_input_messages(attrs: dict[str, AttributeValue], messages: list[Message]) -> None:
    """The captured input as ``input.value`` (JSON) and as flattened ``llm.input_messages.*``."""
    attrs["input.value"] = _encode([_plain(m) for m in messages]).decode()
    attrs["input.mime_type"] = "application/json"
    for index, message in enumerate(messages):
        _flatten(attrs, f"llm.input_messages.{index}.message.", message)


def _plain(message: Message) -> dict[str, Any]:
    plain: dict[str, Any] = {"role": message.role}
    if message.content is not None:
        plain["content"] = message.content
    if message.tool_call_id is not None:
        plain["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        plain["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    return plain


def _flatten(attrs: dict[str, AttributeValue], prefix: str, message: Message) -> None:
    """A message as OpenInference's flattened ``llm.input_messages.<i>.message.*`` attributes."""
    attrs[prefix + "role"] = message.role
    if message.content is not None:
        attrs[prefix + "content"] = message.content
    if message.tool_call_id is not None:
        attrs[prefix + "tool_call_id"] = message.tool_call_id
    for index, call in enumerate(message.tool_calls):
        call_prefix = f"{prefix}tool_calls.{index}.tool_call."
        if call.id is not None:
            attrs[call_prefix + "id"] = call.id
        attrs[call_prefix + "function.name"] = call.name
        attrs[call_prefix + "function.arguments"] = call.arguments
