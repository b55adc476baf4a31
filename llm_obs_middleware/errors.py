"""Exceptions raised by llm_obs_middleware.

Hierarchy::

    LLMObsError
    ├── ConfigurationError (ValueError)   bad config, raised at start-up
    ├── MissingDependencyError (ImportError)   an optional extra is not installed
    ├── ProviderError
    │   ├── UnknownProviderError
    │   ├── UpstreamPoolFull              no free upstream connection in time: the gateway's
    │   │                                 capacity, not the provider's failure
    │   └── UpstreamError                 carries provider and status
    │       ├── UpstreamTimeout
    │       ├── UpstreamConnectError
    │       └── UpstreamProtocolError     an answer HTTP cannot carry (e.g. status outside 100-599)
    ├── SchemaError                       wraps msgspec decode/validation errors
    └── ExportError                       a sink failed; never reaches a request
        ├── RetryableExportError          the sink is down or busy: the same records are tried again later
        └── PermanentExportError          the sink refused the records: retrying cannot help
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ExportError",
    "LLMObsError",
    "MissingDependencyError",
    "PermanentExportError",
    "ProviderError",
    "RetryableExportError",
    "SchemaError",
    "UnknownProviderError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamPoolFull",
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


class UpstreamPoolFull(ProviderError):
    """Every connection of the upstream pool stayed busy: the gateway is at capacity (no provider failed)."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


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


class RetryableExportError(ExportError):
    """The sink could not take the records now (unreachable, overloaded, timed out): they are retried.

    Any exception a sink raises that is not a :class:`PermanentExportError` is handled the same way.
    """


class PermanentExportError(ExportError):
    """The sink refused the records and would refuse them again (invalid data, a rejected request).

    The export pipeline splits a refused batch in halves until the record(s) it cannot write are
    alone, drops those (counted as ``rejected``, one log line each) and exports the rest.

    Args:
        message: what was refused and why, naming no record content and no secret.
        whole_batch: the refusal does not depend on the records (e.g. the collector answers 401 to
            everything): the batch is dropped without splitting it.
    """

    def __init__(self, message: str, *, whole_batch: bool = False) -> None:
        super().__init__(message)
        self.whole_batch = whole_batch
