"""Test helpers: the OpenAI-compatible fake provider, a misbehaving upstream, an OTLP trace receiver and a
background uvicorn server."""

from __future__ import annotations

from llm_obs_middleware.testing.fake_provider import (
    FakeProvider,
    FakeProviderConfig,
    FakeProviderServer,
    FakeStreamAborted,
    RecordedRequest,
    create_fake_provider,
    run_fake_provider,
)
from llm_obs_middleware.testing.misbehaving import MisbehavingRequest, MisbehavingServer, Misbehaviour
from llm_obs_middleware.testing.otlp_receiver import OTLPReceiver, ReceivedSpan, ReceivedValue
from llm_obs_middleware.testing.server import BackgroundServer

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
