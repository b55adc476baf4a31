"""llm_obs_middleware: observability for every LLM request that crosses an ASGI service.

Pure-ASGI middlewares (trace context, export, accounting, routing), the ``LLMObservability``
helper that mounts them in order, and a standalone gateway (``create_gateway``).
"""

from __future__ import annotations

from .config import (
    Config,
    ExportersConfig,
    LogStoreConfig,
    ModelRoute,
    OTLPConfig,
    PriceOverride,
    PricingConfig,
    PrometheusConfig,
    ProviderConfig,
    Secret,
    TimeoutConfig,
    TraceContextConfig,
)
from .errors import (
    ConfigurationError,
    ExportError,
    LLMObsError,
    MissingDependencyError,
    PermanentExportError,
    ProviderError,
    RetryableExportError,
    SchemaError,
    UnknownProviderError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from .exporters.base import ExportPipeline
from .gateway import Gateway, create_gateway
from .middleware.accounting import AccountingMiddleware
from .middleware.export import ExportMiddleware
from .middleware.routing import RouterMiddleware
from .middleware.stack import LLMObservability
from .middleware.tracecontext import TraceContextMiddleware
from .schema import Attempt, Cost, LLMRecord, NormalizedRequest, NormalizedResponse, Timing, Usage

__version__ = "0.1.0"

__all__ = [
    "AccountingMiddleware",
    "Attempt",
    "Config",
    "ConfigurationError",
    "Cost",
    "ExportError",
    "ExportMiddleware",
    "ExportPipeline",
    "ExportersConfig",
    "Gateway",
    "LLMObsError",
    "LLMObservability",
    "LLMRecord",
    "LogStoreConfig",
    "MissingDependencyError",
    "ModelRoute",
    "NormalizedRequest",
    "NormalizedResponse",
    "OTLPConfig",
    "PermanentExportError",
    "PriceOverride",
    "PricingConfig",
    "PrometheusConfig",
    "ProviderConfig",
    "ProviderError",
    "RetryableExportError",
    "RouterMiddleware",
    "SchemaError",
    "Secret",
    "TimeoutConfig",
    "Timing",
    "TraceContextConfig",
    "TraceContextMiddleware",
    "UnknownProviderError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "Usage",
    "__version__",
    "create_gateway",
]
