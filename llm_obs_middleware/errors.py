"""Exceptions raised by llm_obs_middleware.

Hierarchy::

    LLMObsError
    ├── ConfigurationError (ValueError)   bad config, raised at start-up
    ├── MissingDependencyError (ImportError)   an optional extra is not installed
    ├── ProviderError
    │   ├── UnknownProviderError
    │   └── UpstreamError                 carries provider and status
    │       ├── UpstreamTimeout
    │       ├── UpstreamConnectError
    │       └── UpstreamProtocolError     an answer HTTP cannot carry (e.g. status outside 100-599)
    ├── SchemaError                       wraps msgspec decode/validation errors
    └── ExportError                       a sink failed; never reaches a request
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ExportError",
    "LLMObsDeprecationWarning",
    "LLMObsError",
    "MissingDependencyError",
    "ProviderError",
    "SchemaError",
    "UnknownProviderError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
]


class LLMObsError(Exception):
    """Root of every exception this package raises."""


class ConfigurationError(LLMObsError, ValueError):
    """The configuration is invalid; the message names the field."""


class MissingDependencyError(LLMObsError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ProviderError(LLMObsError):
    """A provider could not be used."""


class UnknownProviderError(ProviderError):
    """A route names a provider that is not configured."""


class UpstreamError(ProviderError):
    """The upstream provider failed before answering."""

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time (connect, first byte or total)."""


class UpstreamConnectError(UpstreamError):
    """The upstream could not be reached."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something HTTP cannot carry on to a client (e.g. a status outside 100-599)."""


class SchemaError(LLMObsError):
    """A payload could not be decoded into the normalized schema."""


class ExportError(LLMObsError):
    """A sink failed to export; logged and counted, never raised into a request."""


class LLMObsDeprecationWarning(UserWarning):
    """A deprecated option or API is used (a UserWarning so users see it)."""
