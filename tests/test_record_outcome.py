"""Which failure a record names when several happen to one exchange."""

from __future__ import annotations

from llm_obs_middleware._record import build_record
from llm_obs_middleware.schema import NormalizedResponse
from llm_obs_middleware.state import Exchange


def _streamed_exchange(in_band_error: str | None) -> Exchange:
    exchange = Exchange({"method": "POST", "path": "/bedrock/model/m/converse-stream"})
    exchange.is_llm = True
    exchange.provider = exchange.provider_kind = "aws.bedrock"
    exchange.status = 200
    exchange.streamed = True
    exchange.response = NormalizedResponse(
        finish_reason="error" if in_band_error else "stop",
        error_type=in_band_error,
        error_message="Too many tokens" if in_band_error else None,
    )
    return exchange


def test_hang_up_after_an_in_band_error_records_the_providers_error() -> None:
    # botocore closes the connection as soon as it reads an exception event, which can reach the
    # gateway before the relay sees the end of the stream.
    exchange = _streamed_exchange("throttlingException")
    exchange.fail("client_disconnected", "client_disconnected")
    record = build_record(exchange, None)
    assert (record.outcome, record.error_type, record.error_message) == (
        "upstream_error",
        "throttlingException",
        "Too many tokens",
    )


def test_hang_up_mid_stream_is_a_client_disconnect() -> None:
    exchange = _streamed_exchange(None)
    exchange.fail("client_disconnected", "client_disconnected")
    record = build_record(exchange, None)
    assert (record.outcome, record.error_type) == ("client_disconnected", "client_disconnected")


def test_a_gateway_diagnosis_wins_over_a_later_in_band_error() -> None:
    exchange = _streamed_exchange("throttlingException")
    exchange.fail("upstream_error", "upstream_timeout", "provider exceeded its total timeout")
    record = build_record(exchange, None)
    assert (record.outcome, record.error_type) == ("upstream_error", "upstream_timeout")
