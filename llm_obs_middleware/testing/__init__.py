"""Test helpers: the OpenAI-compatible fake provider and a background uvicorn server."""

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
from .server import BackgroundServer

__all__ = [
    "BackgroundServer",
    "FakeProvider",
    "FakeProviderConfig",
    "FakeProviderServer",
    "FakeStreamAborted",
    "RecordedRequest",
    "create_fake_provider",
    "run_fake_provider",
]
