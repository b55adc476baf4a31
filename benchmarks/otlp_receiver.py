"""A tiny OTLP/HTTP traces receiver: ``POST /v1/traces`` answers 200 and counts the spans.

Stands in for an OpenTelemetry Collector so the "every sink on" gateway really encodes and ships its
spans over loopback. ``GET /stats`` returns ``{"requests": N, "spans": M, "bytes": B}`` so the
benchmark can tell how many spans arrived (the SDK's batch processor drops spans when its queue is
full, and the report says so).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["OTLPReceiver"]

_PROTOBUF = [(b"content-type", b"application/x-protobuf"), (b"content-length", b"0")]


class OTLPReceiver:
    """Raw ASGI app; decodes each export only to count its spans."""

    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.bytes = 0
        self.bad = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if scope["method"] == "GET" and scope["path"] == "/stats":
            payload = msgspec.json.encode(
                {"requests": self.requests, "spans": self.spans, "bytes": self.bytes, "bad": self.bad}
            )
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        self.requests += 1
        self.bytes += len(body)
        self.spans += self._count(body)
        await send({"type": "http.response.start", "status": 200, "headers": _PROTOBUF})
        await send({"type": "http.response.body", "body": b""})

    def _count(self, body: bytes) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:  # a body we cannot read is counted, not fatal
            self.bad += 1
            return 0
        return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
