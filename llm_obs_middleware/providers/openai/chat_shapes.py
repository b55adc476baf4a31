"""The OpenAI Chat Completions shapes translation reads (requests) and writes (responses, chunks).

Requests decode only what a translator maps; responses and chunks are encoded from Structs with
msgspec. https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ABSENT",
    "DONE",
    "ChatMessage",
    "ChatRequest",
    "Chunk",
    "ChunkChoice",
    "ChunkWriter",
    "ClientRequest",
    "Completion",
    "CompletionChoice",
    "CompletionMessage",
    "CompletionTokensDetails",
    "ContentPart",
    "Delta",
    "Embedding",
    "Embeddings",
    "EmbeddingsRequest",
    "EmbeddingsUsage",
    "FunctionDefinition",
    "FunctionDelta",
    "OpenAIUsage",
    "OutputFunction",
    "OutputToolCall",
    "PromptTokensDetails",
    "ToolCallDelta",
    "assistant_completion",
    "decode_chat_request",
    "decode_embeddings_request",
    "encode",
    "error_event",
    "present",
]


DONE = b"data: [DONE]\n\n"
"""The last event of a completed stream."""
ABSENT = msgspec.Raw()
"""The default of ``Raw`` fields (msgspec cannot put ``Raw`` in a union with ``None``): not sent."""


def present(raw: msgspec.Raw) -> bool:
    """Whether a ``Raw`` field was sent with a value (not absent, not ``null``)."""
    return bool(raw) and bytes(raw) != b"null"


class ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: msgspec.Raw = ABSENT
    strict: bool | None = None


class Tool(msgspec.Struct):
    function: FunctionDefinition
    type: str = "function"


class ToolChoiceFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    type: str = "function"
    function: ToolChoiceFunction | None = None


class JSONSchemaFormat(msgspec.Struct):
    name: str | None = None
    schema: msgspec.Raw = ABSENT
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct):
    type: str
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    """A ``POST /v1/chat/completions`` body: what translators map, plus every documented parameter
    some provider lacks (``Raw``: only its presence matters, for the ``unsupported_params`` rule)."""

    model: str
    messages: list[ChatMessage]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: msgspec.Raw = ABSENT
    reasoning_effort: str | None = None
    metadata: msgspec.Raw = ABSENT
    store: bool | None = None
    service_tier: str | None = None
    modalities: msgspec.Raw = ABSENT
    audio: msgspec.Raw = ABSENT
    prediction: msgspec.Raw = ABSENT
    web_search_options: msgspec.Raw = ABSENT
    functions: msgspec.Raw = ABSENT
    function_call: msgspec.Raw = ABSENT
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    base64 = False
    """Only embeddings come as base64 (the attribute every translated request has)."""

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options is not None and self.stream_options.include_usage)

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_list(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


decode_chat_request = msgspec.json.Decoder(ChatRequest).decode


class EmbeddingsRequest(msgspec.Struct):
    """A ``POST /v1/embeddings`` body. https://platform.openai.com/docs/api-reference/embeddings"""

    model: str
    input: str | list[str | int | list[int]]
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None

    include_usage = False
    """Embeddings never stream (the attribute every translated request has)."""

    @property
    def base64(self) -> bool:
        return self.encoding_format == "base64"

    @property
    def texts(self) -> list[str] | None:
        """The inputs as texts; ``None`` when they are token ids, which only OpenAI can read."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if all(isinstance(item, str) for item in value):
            return [item for item in value if isinstance(item, str)]
        return None


decode_embeddings_request = msgspec.json.Decoder(EmbeddingsRequest).decode
ClientRequest = ChatRequest | EmbeddingsRequest


# --- what we write -------------------------------------------------------------------------------


class PromptTokensDetails(msgspec.Struct, gc=False):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct, gc=False):
    reasoning_tokens: int = 0


class OpenAIUsage(msgspec.Struct, omit_defaults=True, gc=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class OutputFunction(msgspec.Struct, gc=False):
    name: str
    arguments: str


class OutputToolCall(msgspec.Struct, gc=False):
    id: str
    function: OutputFunction
    type: str = "function"


class CompletionMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None
    refusal: str | None = None
    reasoning_content: str | None = None
    """Not in OpenAI's schema: the provider's visible reasoning (thinking), as DeepSeek names it."""
    tool_calls: list[OutputToolCall] | None = None


class CompletionChoice(msgspec.Struct):
    index: int
    message: CompletionMessage
    finish_reason: str
    logprobs: None = None


class Completion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage | None = None
    object: str = "chat.completion"


def assistant_completion(
    *,
    id: str,
    created: int,
    model: str,
    texts: list[str],
    reasoning: list[str],
    calls: list[OutputToolCall],
    finish_reason: str,
    usage: OpenAIUsage | None,
) -> Completion:
    """A one-choice chat completion from an assistant turn's text, reasoning and tool-call parts.

    ``content`` is null only when the turn is nothing but tool calls, as OpenAI answers."""
    message = CompletionMessage(
        role="assistant",
        content="".join(texts) if texts or not calls else None,
        reasoning_content="".join(reasoning) or None,
        tool_calls=calls or None,
    )
    return Completion(
        id=id, created=created, model=model, choices=[CompletionChoice(0, message, finish_reason)], usage=usage
    )


class FunctionDelta(msgspec.Struct, omit_defaults=True, gc=False):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True, gc=False):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None


class Chunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: OpenAIUsage | None = None
    object: str = "chat.completion.chunk"


class EmbeddingsUsage(msgspec.Struct, gc=False):
    prompt_tokens: int
    total_tokens: int


class Embedding(msgspec.Struct):
    index: int
    embedding: list[float] | str
    """Floats, or base64 of little-endian float32s when the client asked ``encoding_format: base64``."""
    object: str = "embedding"


class Embeddings(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage
    object: str = "list"


encode = msgspec.json.Encoder().encode


class ChunkWriter:
    """Encodes the OpenAI chunks of one stream as SSE events (``id``, ``created`` and ``model`` fixed)."""

    __slots__ = ("created", "id", "model")

    def __init__(self, created: int, id: str, model: str) -> None:
        self.created = created
        self.id = id
        self.model = model

    def delta(self, delta: Delta, finish: str | None = None, index: int = 0) -> bytes:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish)
        chunk = Chunk(id=self.id, created=self.created, model=self.model, choices=[choice])
        return b"data: " + encode(chunk) + b"\n\n"

    def usage(self, usage: OpenAIUsage) -> bytes:
        chunk = Chunk(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)
        return b"data: " + encode(chunk) + b"\n\n"

    def start(self, index: int = 0) -> bytes:
        """The first chunk of a choice: the assistant role and empty content."""
        return self.delta(Delta(role="assistant", content=""), index=index)

    def tool_call(
        self, index: int, id: str | None, name: str | None, arguments: str | None = "", choice: int = 0
    ) -> bytes:
        """A tool call's first chunk: its id, type and name (and the arguments when they come at once)."""
        function = FunctionDelta(name=name, arguments=arguments)
        call = ToolCallDelta(index=index, id=id, type="function", function=function)
        return self.delta(Delta(tool_calls=[call]), index=choice)

    def tool_arguments(self, index: int, arguments: str | None) -> bytes:
        """More of a started tool call's arguments."""
        return self.delta(Delta(tool_calls=[ToolCallDelta(index=index, function=FunctionDelta(arguments=arguments))]))

    def done(self, usage: OpenAIUsage | None) -> bytes:
        """The end of a completed stream: the usage chunk (when asked for) and ``[DONE]``."""
        return (self.usage(usage) if usage is not None else b"") + DONE


def error_event(message: str, error_type: str, code: str | None) -> bytes:
    """An in-band stream error, as OpenAI sends one (the SDK raises ``APIError`` on it)."""
    return b'data: {"error":' + encode({"message": message, "type": error_type, "code": code}) + b"}\n\n"
