"""Test helpers: the OpenAI-compatible fake provider, an OTLP trace receiver and a background uvicorn server."""

from __future__ import annotations

from .fake_provider import (
    FakeProvider,
    FakeProviderConfig,
    FakeProviderServer,
    FakeStreamAborted,
    RecordedRequest,
    create_fake_provider,
    run_fake_provider,
)
from .otlp_receiver import OTLPReceiver, ReceivedSpan, ReceivedValue
from .server import BackgroundServer

__all__ = [
    "BackgroundServer",
    "FakeProvider",
    "FakeProviderConfig",
    "FakeProviderServer",
    "FakeStreamAborted",
    "OTLPReceiver",
    "ReceivedSpan",
    "ReceivedValue",
    "RecordedRequest",
    "create_fake_provider",
    "run_fake_provider",
]
