"""What :class:`~.otlp_receiver.OTLPReceiver` keeps: OTLP protobuf spans and metric points as plain dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypeAlias, TypedDict

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = [
    "Protocol",
    "ReceivedMetricPoint",
    "ReceivedSpan",
    "ReceivedValue",
    "decode_attributes",
    "decode_span",
    "metric_points",
]

ReceivedValue: TypeAlias = "str | bool | int | float | bytes | list[ReceivedValue] | dict[str, ReceivedValue] | None"
"""An OTLP ``AnyValue`` as Python: arrays become lists, key-value lists dicts, an empty value ``None``."""

Protocol = Literal["http", "grpc"]

# Span.SpanKind and Status.StatusCode numbers, named without their proto prefixes.
_KINDS: Final = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES: Final = {0: "UNSET", 1: "OK", 2: "ERROR"}


class ReceivedSpan(TypedDict):
    """One span as the receiver decoded it (ids are lowercase hex, times Unix nanoseconds)."""

    protocol: Protocol
    """How it arrived: ``http`` or ``grpc``."""
    name: str
    kind: str
    """``CLIENT``, ``SERVER``, ``INTERNAL``, ``PRODUCER``, ``CONSUMER`` or ``UNSPECIFIED``."""
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    start_unix_nano: int
    end_unix_nano: int
    attributes: dict[str, ReceivedValue]
    status_code: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    status_message: str
    resource: dict[str, ReceivedValue]
    """Attributes of the span's resource (``service.name``, ``telemetry.sdk.*``...)."""
    scope: str
    """Name of the instrumentation scope."""


class ReceivedMetricPoint(TypedDict):
    """One data point of a received metric (histogram fields are zero/empty for sums and gauges)."""

    protocol: Protocol
    name: str
    unit: str
    type: str
    """``histogram``, ``sum``, ``gauge`` (exponential histograms and summaries are not decoded)."""
    attributes: dict[str, ReceivedValue]
    value: float
    """A sum's or gauge's value; a histogram's sum."""
    count: int
    bucket_counts: list[int]
    explicit_bounds: list[float]
    time_unix_nano: int
    resource: dict[str, ReceivedValue]
    scope: str


def metric_points(
    metric: Metric, protocol: Protocol, resource: Mapping[str, ReceivedValue], scope: str
) -> list[ReceivedMetricPoint]:
    kind = metric.WhichOneof("data")
    points: list[ReceivedMetricPoint] = []
    if kind == "histogram":
        for point in metric.histogram.data_points:
            points.append(
                {
                    **_point_base(metric, protocol, resource, scope, "histogram"),
                    "attributes": decode_attributes(point.attributes),
                    "value": point.sum,
                    "count": point.count,
                    "bucket_counts": list(point.bucket_counts),
                    "explicit_bounds": list(point.explicit_bounds),
                    "time_unix_nano": point.time_unix_nano,
                }
            )
    elif kind in ("sum", "gauge"):
        number_points = metric.sum.data_points if kind == "sum" else metric.gauge.data_points
        for number in number_points:
            value = number.as_double if number.WhichOneof("value") == "as_double" else float(number.as_int)
            points.append(
                {
                    **_point_base(metric, protocol, resource, scope, kind),
                    "attributes": decode_attributes(number.attributes),
                    "value": value,
                    "count": 0,
                    "bucket_counts": [],
                    "explicit_bounds": [],
                    "time_unix_nano": number.time_unix_nano,
                }
            )
    return points


def _point_base(
    metric: Metric, protocol: Protocol, resource: Mapping[str, ReceivedValue], scope: str, kind: str
) -> ReceivedMetricPoint:
    return {
        "protocol": protocol,
        "name": metric.name,
        "unit": metric.unit,
        "type": kind,
        "attributes": {},
        "value": 0.0,
        "count": 0,
        "bucket_counts": [],
        "explicit_bounds": [],
        "time_unix_nano": 0,
        "resource": dict(resource),
        "scope": scope,
    }


def decode_span(span: Span, protocol: Protocol, resource: Mapping[str, ReceivedValue], scope: str) -> ReceivedSpan:
    return {
        "protocol": protocol,
        "name": span.name,
        "kind": _KINDS.get(int(span.kind), str(span.kind)),
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "start_unix_nano": span.start_time_unix_nano,
        "end_unix_nano": span.end_time_unix_nano,
        "attributes": decode_attributes(span.attributes),
        "status_code": _STATUS_CODES.get(int(span.status.code), str(span.status.code)),
        "status_message": span.status.message,
        "resource": dict(resource),
        "scope": scope,
    }


def decode_attributes(pairs: Iterable[KeyValue]) -> dict[str, ReceivedValue]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> ReceivedValue:
    match value.WhichOneof("value"):
        case "string_value":
            return value.string_value
        case "bool_value":
            return value.bool_value
        case "int_value":
            return value.int_value
        case "double_value":
            return value.double_value
        case "bytes_value":
            return value.bytes_value
        case "array_value":
            return [_value(item) for item in value.array_value.values]
        case "kvlist_value":
            return decode_attributes(value.kvlist_value.values)
        case _:  # unset, or a profiles-only string-table index
            return None
