"""Token estimates for exchanges whose provider reported no usage (run in the export worker).

Some streams and servers send no usage (an OpenAI stream without ``stream_options.include_usage``
reaching an app's own endpoint, servers that ignore it). Such a record still gets token counts and a
cost, flagged ``estimated=True``:

- **Input** comes from the request body the exchange kept: the text of ``messages``/``input``/
  ``prompt``/``system``/``instructions``/``contents`` (tool definitions as compact JSON), plus
  :data:`MESSAGE_TOKENS` per message and :data:`REPLY_TOKENS` once, as in OpenAI's cookbook "How to
  count tokens with tiktoken" (3 per message plus the role). Images, audio and files are not counted;
  token-id inputs count one token per id.
- **Output** comes from the size of what the response carried (``NormalizedResponse.output_chars``:
  text, reasoning, refusals, tool names and arguments); its text is only kept with content capture.

Counting: **tiktoken** for OpenAI-family models (those tiktoken knows an encoding for: ``gpt-*``,
``o1``/``o3``/``o4``, ``text-embedding-*``...) when the ``tiktoken`` extra is installed and the
encoding is available, on the input text, the tool calls and (with capture on) the output text.
Everything else uses the **heuristic** ``ceil(characters / 4)`` (:data:`CHARS_PER_TOKEN`, OpenAI's
rule of thumb for English; it undercounts languages written without spaces, such as Chinese).

tiktoken fetches an encoding's file from the internet on first use (``TIKTOKEN_CACHE_DIR`` can hold
it for offline machines). That never happens on the event loop: the first estimate needing an
encoding starts a daemon thread to load it and uses the heuristic meanwhile; if loading fails, the
heuristic is used from then on (logged once, at INFO).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from llm_obs_middleware.records.schema import NormalizedResponse, Usage

if TYPE_CHECKING:
    from tiktoken import Encoding

__all__ = ["CHARS_PER_TOKEN", "MESSAGE_TOKENS", "REPLY_TOKENS", "TokenEstimator", "default_estimator"]

logger = logging.getLogger("llm_obs_middleware.estimate")

CHARS_PER_TOKEN: Final = 4
MESSAGE_TOKENS: Final = 4
"""Per message: OpenAI's 3 framing tokens plus one for the role."""
REPLY_TOKENS: Final = 3
"""Once per chat request: the tokens priming the assistant's reply."""

# Request fields holding what the model reads, across the wire formats (OpenAI chat/responses/
# embeddings/completions, Anthropic messages, Gemini generateContent).
_TEXT_FIELDS: Final = ("messages", "input", "prompt", "system", "instructions", "contents", "systemInstruction")
_TOOL_FIELDS: Final = ("tools", "functions")
# Keys under which strings are not text the model reads as tokens of the prompt.
_SKIP_KEYS: Final = frozenset(
    {
        "type",
        "role",
        "id",
        "call_id",
        "tool_call_id",
        "image_url",
        "input_image",
        "input_audio",
        "input_file",
        "file",
        "file_id",
        "file_data",
        "file_url",
        "url",
        "detail",
        "data",
        "inline_data",
        "inlineData",
        "fileData",
        "mime_type",
        "mimeType",
        "format",
        "cache_control",
        "status",
        "source",
    }
)
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_MAX_MODELS: Final = 4096
_MAX_DEPTH: Final = 32


class _Request:
    """What the request body holds, for counting: texts, token ids and messages."""

    __slots__ = ("messages", "texts", "token_ids")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.token_ids = 0
        self.messages = 0


def _collect(value: Any, texts: list[str], depth: int = 0) -> None:
    if isinstance(value, str):
        texts.append(value)
    elif depth >= _MAX_DEPTH:  # a pathological body must not exhaust the export worker's stack
        return
    elif isinstance(value, list):
        for item in value:
            _collect(item, texts, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _SKIP_KEYS:
                _collect(item, texts, depth + 1)


def _read_request(body: bytes) -> _Request | None:
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    found = _Request()
    for field in _TEXT_FIELDS:
        value = data.get(field)
        if value is None:
            continue
        if isinstance(value, list) and value:
            if all(isinstance(item, int) for item in value):  # embeddings/completions token ids
                found.token_ids += len(value)
                continue
            if all(isinstance(item, list) and all(isinstance(i, int) for i in item) for item in value):
                found.token_ids += sum(len(item) for item in value)  # a batch of token-id inputs
                continue
            if field in ("messages", "contents", "input"):
                found.messages += sum(1 for item in value if isinstance(item, dict))
        _collect(value, found.texts)
    for field in _TOOL_FIELDS:
        value = data.get(field)
        if value:
            found.texts.append(_encode(value).decode())
    return found


def _heuristic(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


class TokenEstimator:
    """Estimates the usage of an exchange without one (see the module docstring for the method).

    Args:
        encodings: tiktoken encodings by name (``"o200k_base"``, ``"cl100k_base"``) to use as they
            are; tests build small ones, deployments may pass preloaded ones.
        load_encodings: load encodings not given (in a background thread, via ``tiktoken.get_encoding``).
    """

    def __init__(self, *, encodings: Mapping[str, Encoding] | None = None, load_encodings: bool = True) -> None:
        self._encodings: dict[str, Encoding | None] = dict(encodings or {})
        self._load_encodings = load_encodings
        self._names: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def estimate(self, model: str | None, operation: str, body: bytes, response: NormalizedResponse) -> Usage | None:
        """Input and output tokens of one exchange; ``None`` when the body is not a JSON object."""
        request = _read_request(body)
        if request is None:
            return None
        encoding = self.encoding_for(model) if model else None
        input_tokens = request.token_ids + self._count(request.texts, encoding)
        if request.messages:
            input_tokens += request.messages * MESSAGE_TOKENS + REPLY_TOKENS
        if operation == "embeddings":
            return Usage(input_tokens=input_tokens, total_tokens=input_tokens)
        output_tokens = self._output_tokens(response, encoding)
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens)

    def encoding_for(self, model: str) -> Encoding | None:
        """The tiktoken encoding of an OpenAI-family model, if available now (``None``: use the heuristic)."""
        name = self._names[model] if model in self._names else self._encoding_name(model)
        if name is None:
            return None
        if name not in self._encodings:
            self._start_loading(name)
        return self._encodings.get(name)

    def preload(self, names: tuple[str, ...] = ("o200k_base", "cl100k_base")) -> None:
        """Load encodings now, blocking (may download); failures leave the heuristic in place."""
        for name in names:
            if self._encodings.get(name) is None:
                self._load(name)

    def _encoding_name(self, model: str) -> str | None:
        try:
            from tiktoken.model import encoding_name_for_model
        except ImportError:  # the tiktoken extra is not installed: every model uses the heuristic
            name = None
        else:
            try:
                name = encoding_name_for_model(model)
            except KeyError:  # not an OpenAI-family model
                name = None
        if len(self._names) >= _MAX_MODELS:
            self._names.clear()
        self._names[model] = name
        return name

    def _start_loading(self, name: str) -> None:
        with self._lock:
            if name in self._encodings:
                return
            if not self._load_encodings:
                self._encodings[name] = None
                return
            self._encodings[name] = None  # the heuristic until the thread has loaded it
        thread = threading.Thread(target=self._load, args=(name,), name=f"llm-obs-tiktoken-{name}", daemon=True)
        thread.start()

    def _load(self, name: str) -> None:
        try:
            import tiktoken

            encoding = tiktoken.get_encoding(name)
        except Exception as exc:  # offline, missing extra, bad cache: estimates stay heuristic
            logger.info("tiktoken encoding %s is unavailable (%s); token estimates use characters/4", name, exc)
            return
        self._encodings[name] = encoding

    @staticmethod
    def _count(texts: list[str], encoding: Encoding | None) -> int:
        if encoding is None:
            return _heuristic(sum(len(text) for text in texts))
        return sum(len(encoding.encode_ordinary(text)) for text in texts)

    def _output_tokens(self, response: NormalizedResponse, encoding: Encoding | None) -> int:
        if encoding is None:
            return _heuristic(response.output_chars)
        texts = [text for call in response.tool_calls for text in (call.name, call.arguments)]
        if response.output_text is not None:  # kept only with content capture
            texts.append(response.output_text)
        counted = sum(len(text) for text in texts)
        # Whatever is not kept as text (reasoning, refusals, uncaptured content) is sized by its characters.
        return self._count(texts, encoding) + _heuristic(max(0, response.output_chars - counted))


_default: TokenEstimator | None = None


def default_estimator() -> TokenEstimator:
    """The process-wide estimator ``build_record`` uses unless given one (created on first use)."""
    global _default
    if _default is None:
        _default = TokenEstimator()
    return _default
