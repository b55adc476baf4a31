"""Redaction: fields dropped, patterns masked and content cut, once per record, before any sink sees it.

The export pipeline applies :class:`Redactor` to every record it builds (``transform``), so the log
store, JSONL, OTLP and Prometheus all get the same redacted record and nothing unredacted leaves
the process. Content capture itself is a separate switch (``capture_content``, off by default);
redaction also covers what is recorded without it: metadata values, the user and error messages
(an upstream error can echo a key back).

Configured secrets (every provider key, AWS secret and session token, credential-like provider
headers, the admin key) are masked always, in every string field of the record: an upstream that
echoes its key in an error body must not put it in a row, a span or a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.records.schema import LLMRecord

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import Config, RedactConfig
    from llm_obs_middleware.records.schema import Message

__all__ = ["Redactor", "configured_secrets", "redactor"]

_MIN_SECRET_CHARS = 6  # shorter values are no credential, and masking them would garble records
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|signature|cookie", re.IGNORECASE)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(LLMRecord).decode


def configured_secrets(config: Config) -> list[str]:
    """Every secret the config holds: provider keys, AWS secrets, credential headers, the admin key."""
    found: list[str] = []
    for provider in config.providers.values():
        found += [key.get_secret_value() for key in provider.api_keys]
        found += [s.get_secret_value() for s in (provider.aws_secret_access_key, provider.aws_session_token) if s]
        found += [value for name, value in provider.headers.items() if _CREDENTIAL_HEADER.search(name)]
    if config.admin_key is not None:
        found.append(config.admin_key.get_secret_value())
    return found


def redactor(config: RedactConfig, secrets: Iterable[str] = ()) -> Redactor | None:
    """A :class:`Redactor` for ``config`` and ``secrets``, or ``None`` when it would change nothing."""
    secrets = [secret for secret in secrets if len(secret) >= _MIN_SECRET_CHARS]
    if secrets or config.fields or config.patterns or config.max_content_chars is not None:
        return Redactor(config, secrets)
    return None


class Redactor:
    """Returns each record with the configured fields dropped, patterns replaced and content capped.

    Args:
        config: the ``redact`` block.
        secrets: strings masked wherever they appear in a record (see :func:`configured_secrets`).
    """

    __slots__ = ("_cap", "_configured", "_drop", "_pattern", "_replacement", "_secrets", "_secrets_pattern")

    def __init__(self, config: RedactConfig, secrets: Iterable[str] = ()) -> None:
        # As they appear inside JSON strings; longest first, so a key containing another is masked whole.
        self._secrets = sorted({_encode(secret)[1:-1] for secret in secrets if secret}, key=len, reverse=True)
        self._secrets_pattern = re.compile(b"|".join(re.escape(secret) for secret in self._secrets))
        self._drop = frozenset(config.fields)
        # One alternation: a single pass over each string whatever the number of patterns.
        self._pattern = re.compile("|".join(f"(?:{p})" for p in config.patterns)) if config.patterns else None
        self._replacement = config.replacement
        self._cap = config.max_content_chars
        self._configured = bool(self._drop or self._pattern or self._cap is not None)

    def __call__(self, record: LLMRecord) -> LLMRecord:
        if self._secrets:
            record = self._mask_secrets(record)
        if not self._configured:
            return record
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

    def _mask_secrets(self, record: LLMRecord) -> LLMRecord:
        """Every string field at once: a search of the record's JSON, a rebuild only on a hit.

        ``in`` per secret (about 0.3 µs each on a typical record) is several times faster than one
        regex alternation over the same bytes; the regex only replaces, on the rare hit."""
        encoded = _encode(record)
        for secret in self._secrets:
            if secret in encoded:
                return _decode(self._secrets_pattern.sub(_encode(self._replacement)[1:-1], encoded))
        return record

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
