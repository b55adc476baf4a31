"""Bedrock's errors, owned here: the type of an HTTP error answer, ConverseStream's in-band exception
frames (read, and written when the gateway cuts a stream), and what an OpenAI client is told of each.

Bedrock names an error in the ``x-amzn-errortype`` header (``ThrottlingException:http://...``) or, in a
stream, the frame's ``:exception-type`` (``throttlingException``); its body is only ``{"message": ...}``.
Throttling (``ThrottlingException``, 429), a model still loading (``ModelNotReadyException``, 429) and a
quota (``ServiceQuotaExceededException``) are rate limits a client should retry later; Bedrock sends no
``Retry-After``, so one is passed on only when an upstream hop sent a readable one, as delta-seconds
(``providers.translate_base.delta_seconds``, the rule every translator follows).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from llm_obs_middleware.codecs.eventstream import encode_message
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers.bedrock.wire import ErrorBody
from llm_obs_middleware.providers.translate_base import delta_seconds  # re-exported: the one Retry-After rule
from llm_obs_middleware.records.schema import NormalizedResponse

__all__ = [
    "STATUS_ERRORS",
    "ErrorObserver",
    "decode_error",
    "delta_seconds",
    "error_type_name",
    "openai_error_type",
    "resolve_error",
    "stream_exception",
    "stream_failure",
]

STATUS_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
"""The error type by status when neither the body nor ``x-amzn-errortype`` names it (429 may also be
``ModelNotReadyException``, 400 ``ServiceQuotaExceededException``)."""
_RATE_LIMITS = frozenset({"throttlingexception", "modelnotreadyexception", "servicequotaexceededexception"})
_CLIENT_ERRORS = frozenset({"validationexception", "resourcenotfoundexception", "accessdeniedexception"})
# ConverseStream's exception for a stream that failed after it started; botocore raises it as an
# EventStreamError with this code ("retry your request").
_STREAM_EXCEPTION = {
    ":message-type": "exception",
    ":exception-type": "modelStreamErrorException",
    ":content-type": "application/json",
}
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_encode = msgspec.json.Encoder().encode


def decode_error(body: bytes) -> ErrorBody | None:
    """An error body or exception payload; ``None`` when it is not JSON of that shape."""
    try:
        return _decode_error(body)
    except msgspec.DecodeError:
        return None


def error_type_name(named: str) -> str | None:
    """``com.amazon.coral.service#ThrottlingException:http://...`` -> ``ThrottlingException``."""
    return named.rpartition("#")[2].partition(":")[0] or None


def resolve_error(body: bytes, header_type: str | None) -> tuple[str | None, str | None]:
    """``(error type, message)`` of an HTTP error answer: the type from the body's ``__type``/``code``,
    else the ``x-amzn-errortype`` header (``None`` when neither names one); the record and the OpenAI
    client's ``code`` read it alike."""
    error = decode_error(body)
    error_type = None
    message = None
    if error is not None:
        message = error.message or error.Message
        named = error.type or error.code
        if named:
            error_type = error_type_name(named)
    if error_type is None and header_type:
        error_type = error_type_name(header_type)
    return error_type, message


def stream_failure(headers: Mapping[str, object], payload: bytes) -> tuple[str, str | None] | None:
    """``(error type, message)`` of an in-band ``exception`` or ``error`` frame; ``None`` for an event."""
    kind = headers.get(":message-type")
    if kind == "exception":
        error = decode_error(payload)
        message = (error.message or error.Message) if error is not None else None
        return str(headers.get(":exception-type") or "exception"), message
    if kind == "error":
        text = headers.get(":error-message")
        return str(headers.get(":error-code") or "error"), str(text) if text else None
    return None


def stream_exception(message: str) -> bytes:
    """The event-stream exception message that ends a stream the gateway had to cut."""
    return encode_message(_STREAM_EXCEPTION, _encode(ErrorBody(message=message)))


def openai_error_type(error_type: str) -> str:
    """The OpenAI error ``type`` for a Bedrock error type (any case: headers say ``ThrottlingException``,
    stream frames ``throttlingException``)."""
    lowered = error_type.lower()
    if lowered in _RATE_LIMITS:
        return "rate_limit_error"
    if lowered in _CLIENT_ERRORS:
        return "invalid_request_error"
    return "server_error"


class ErrorObserver(BufferedBody):
    """An error answer: ``{"message": ...}``; the type from ``__type``/``code``, else the
    ``x-amzn-errortype`` header (``header_type``), else the status."""

    __slots__ = ("_header_type", "_model", "_status")

    def __init__(self, model: str | None, status: int, header_type: str | None = None) -> None:
        super().__init__()
        self._model = model
        self._status = status
        self._header_type = header_type

    def finish(self) -> NormalizedResponse:
        error_type, message = resolve_error(self._body() or b"", self._header_type)
        error_type = error_type or STATUS_ERRORS.get(self._status) or f"http_{self._status}"
        return NormalizedResponse(
            model=self._model, completed=False, finish_reason="error", error_type=error_type, error_message=message
        )
