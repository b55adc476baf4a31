"""OpenAI Chat Completions <-> Bedrock Converse (``/model/{id}/converse`` and ``/converse-stream``).

Request (:mod:`.translate_request`): system/developer messages become ``system`` blocks; turns
become ``text``, ``image``, ``toolUse`` and ``toolResult`` blocks. The router signs the request (SigV4
or a Bedrock API key) as for native calls. Response: ``reasoningContent`` becomes ``reasoning_content``;
usage counts cache reads and writes in ``prompt_tokens``; ``finish_reason`` is derived from the record's
normalized one. The stream is AWS event-stream framed; an exception frame becomes an in-band OpenAI
error (a throttling one a ``rate_limit_error``). Converse names no id or model, so the router's id and
the deployment's model are reported. https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from llm_obs_middleware.providers.bedrock.errors import delta_seconds, openai_error_type, resolve_error
from llm_obs_middleware.providers.bedrock.observe import ConverseEvent, ConverseStreamObserver
from llm_obs_middleware.providers.bedrock.translate_request import converse_request
from llm_obs_middleware.providers.bedrock.wire import ConverseResponse, TokenUsage, finish_reason
from llm_obs_middleware.providers.openai.chat_shapes import (
    ChatRequest,
    ChunkWriter,
    Delta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    PromptTokensDetails,
    assistant_completion,
    encode,
    error_event,
)
from llm_obs_middleware.providers.translate_base import (
    ChatDecoding,
    EventTranslator,
    ResponseContext,
    TranslatedError,
    UnsupportedRule,
    UpstreamRequest,
    compact_json,
    openai_error,
    openai_finish_reason,
    raw_error_message,
)

__all__ = ["BedrockStream", "BedrockTranslator", "openai_usage"]

_decode_response = msgspec.json.Decoder(ConverseResponse).decode


def openai_usage(usage: TokenUsage | None) -> OpenAIUsage | None:
    """Converse usage in OpenAI's shape: ``prompt_tokens`` counts cache reads and writes."""
    if usage is None:
        return None
    cached = usage.cache_read_input_tokens or 0
    prompt = (usage.input_tokens or 0) + cached + (usage.cache_write_input_tokens or 0)
    completion = usage.output_tokens or 0
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=usage.total_tokens if usage.total_tokens is not None else prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


class BedrockTranslator(ChatDecoding):
    """OpenAI Chat Completions to Bedrock Converse and back (see the module docstring).

    The ``finish_reason`` is derived from the record's (:func:`.wire.finish_reason`), errors and
    in-band exception frames are read as the record reads them (:mod:`.errors`).
    """

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        return converse_request(chat, model, unsupported=unsupported)

    def response(self, body: bytes, context: ResponseContext) -> bytes:
        response = _decode_response(body)
        message = response.output.message if response.output is not None else None
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[OutputToolCall] = []
        for block in message.content if message is not None else ():
            if block.text:
                texts.append(block.text)
            elif block.tool_use is not None:
                use = block.tool_use
                function = OutputFunction(use.name, compact_json(use.input))
                calls.append(OutputToolCall(id=use.tool_use_id or "", function=function))
            elif block.reasoning_content is not None and block.reasoning_content.reasoning_text is not None:
                reasoning.append(block.reasoning_content.reasoning_text.text or "")
        completion = assistant_completion(
            id=context.response_id,
            created=context.created,
            model=context.model,
            texts=texts,
            reasoning=reasoning,
            calls=calls,
            finish_reason=openai_finish_reason(finish_reason(response.stop_reason, bool(calls))),
            usage=openai_usage(response.usage),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> BedrockStream:
        return BedrockStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        code, message = resolve_error(body, headers.get("x-amzn-errortype"))
        return openai_error(
            status, message or raw_error_message(body, "bedrock", status), code, delta_seconds(retry_after)
        )


class BedrockStream(EventTranslator[ConverseEvent]):
    """ConverseStream's messages (decoded by :class:`ConverseStreamObserver`) to OpenAI chunks."""

    __slots__ = ("_blocks", "_failed", "_include_usage", "_out", "_stopped", "_usage")
    source = ConverseStreamObserver

    def __init__(self, context: ResponseContext) -> None:
        super().__init__()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._blocks: dict[int, int] = {}  # content block index -> OpenAI tool call index
        self._usage: TokenUsage | None = None
        self._stopped = False
        self._failed = False

    def event(self, message: ConverseEvent) -> bytes:
        if message.failure is not None:
            self._failed = True
            kind, text = message.failure
            return error_event(text or kind, openai_error_type(kind), kind)
        event, name = message.event, message.name
        assert event is not None
        out = self._out
        if name == "contentBlockDelta" and event.delta is not None:
            delta = event.delta
            if delta.text:
                return out.delta(Delta(content=delta.text))
            if delta.reasoning_content is not None and delta.reasoning_content.text:
                return out.delta(Delta(reasoning_content=delta.reasoning_content.text))
            if delta.tool_use is not None and delta.tool_use.input:
                index = self._blocks.get(event.content_block_index or 0)
                if index is not None:
                    return out.tool_arguments(index, delta.tool_use.input)
        elif name == "contentBlockStart" and event.start is not None and event.start.tool_use is not None:
            use = event.start.tool_use
            index = self._blocks[event.content_block_index or 0] = len(self._blocks)
            return out.tool_call(index, use.tool_use_id or "", use.name)
        elif name == "messageStart":
            return out.start()
        elif name == "messageStop":
            self._stopped = True
            reason = finish_reason(event.stop_reason, bool(self._blocks))
            return out.delta(Delta(), openai_finish_reason(reason))
        elif name == "metadata":
            self._usage = event.usage
        return b""

    def close(self) -> bytes:
        tail = self._drain()
        if not self._stopped or self._failed:
            return tail
        return tail + self._out.done(openai_usage(self._usage) if self._include_usage else None)
