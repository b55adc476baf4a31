"""Test helpers: the OpenAI-compatible fake provider, a misbehaving upstream, an OTLP trace receiver and a
background uvicorn server."""

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
from .misbehaving import MisbehavingRequest, MisbehavingServer, Misbehaviour
from .otlp_receiver import OTLPReceiver, ReceivedSpan, ReceivedValue
from .server import BackgroundServer

__all__ = [
    "BackgroundServer",
    "FakeProvider",
    "FakeProviderConfig",
    "FakeProviderServer",
    "FakeStreamAborted",
    "MisbehavingRequest",
    "MisbehavingServer",
    "Misbehaviour",
    "OTLPReceiver",
    "ReceivedSpan",
    "ReceivedValue",
    "RecordedRequest",
    "create_fake_provider",
    "run_fake_provider",
]
