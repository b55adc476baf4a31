"""Redaction: fields dropped, patterns masked and content cut, once per record, before any sink sees it.

The export pipeline applies :class:`Redactor` to every record it builds (``transform``), so the log
store, JSONL, OTLP and Prometheus all get the same redacted record and nothing unredacted leaves
the process. Content capture itself is a separate switch (``capture_content``, off by default);
redaction also covers what is recorded without it: metadata values, the user and error messages
(an upstream error can echo a key back).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from ..config import RedactConfig
    from ..schema import LLMRecord, Message

__all__ = ["Redactor", "redactor"]


def redactor(config: RedactConfig) -> Redactor | None:
    """A :class:`Redactor` for ``config``, or ``None`` when it would change nothing."""
    if config.fields or config.patterns or config.max_content_chars is not None:
        return Redactor(config)
    return None


class Redactor:
    """Returns each record with the configured fields dropped, patterns replaced and content capped.

    Args:
        config: the ``redact`` block.
    """

    __slots__ = ("_cap", "_drop", "_pattern", "_replacement")

    def __init__(self, config: RedactConfig) -> None:
        self._drop = frozenset(config.fields)
        # One alternation: a single pass over each string whatever the number of patterns.
        self._pattern = re.compile("|".join(f"(?:{p})" for p in config.patterns)) if config.patterns else None
        self._replacement = config.replacement
        self._cap = config.max_content_chars

    def __call__(self, record: LLMRecord) -> LLMRecord:
        drop = self._drop
        changes: dict[str, Any] = {}
        if record.input_messages is not None:
            changes["input_messages"] = (
                None if "messages" in drop else [self._message(m) for m in record.input_messages]
            )
        if record.output_text is not None:
            changes["output_text"] = None if "output" in drop else self._content(record.output_text)
        if record.metadata:
            changes["metadata"] = {} if "metadata" in drop else {k: self._text(v) for k, v in record.metadata.items()}
        if record.user is not None:
            changes["user"] = None if "user" in drop else self._text(record.user)
        if record.error_message is not None:
            changes["error_message"] = None if "error_message" in drop else self._text(record.error_message)
        return msgspec.structs.replace(record, **changes) if changes else record

    def _message(self, message: Message) -> Message:
        changes: dict[str, Any] = {}
        if message.content is not None:
            changes["content"] = self._content(message.content)
        if message.tool_calls:
            changes["tool_calls"] = [
                msgspec.structs.replace(call, arguments=self._content(call.arguments)) for call in message.tool_calls
            ]
        return msgspec.structs.replace(message, **changes) if changes else message

    def _content(self, text: str) -> str:
        text = self._text(text)
        if self._cap is not None and len(text) > self._cap:
            return text[: self._cap]
        return text

    def _text(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(self._replacement, text)
