"""llm_obs_middleware: observability for every LLM request that crosses an ASGI service.

Pure-ASGI middlewares (trace context, export, accounting, routing), the ``LLMObservability``
helper that mounts them in order, and a standalone gateway (``create_gateway``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware._lazy import lazy_attributes

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import (
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
    from llm_obs_middleware.errors import (
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
    from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline
    from llm_obs_middleware.gateway.standalone import Gateway, create_gateway
    from llm_obs_middleware.middleware.accounting import AccountingMiddleware
    from llm_obs_middleware.middleware.export import ExportMiddleware
    from llm_obs_middleware.middleware.stack import LLMObservability
    from llm_obs_middleware.middleware.tracecontext import TraceContextMiddleware
    from llm_obs_middleware.records.schema import (
        Attempt,
        Cost,
        LLMRecord,
        NormalizedRequest,
        NormalizedResponse,
        Timing,
        Usage,
    )
    from llm_obs_middleware.routing.middleware import RouterMiddleware

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

# PEP 562: a name's module loads on first use, so importing one middleware loads no exporter backend.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "AccountingMiddleware": "llm_obs_middleware.middleware.accounting",
        "Attempt": "llm_obs_middleware.records.schema",
        "Config": "llm_obs_middleware.config.settings",
        "ConfigurationError": "llm_obs_middleware.errors",
        "Cost": "llm_obs_middleware.records.schema",
        "ExportError": "llm_obs_middleware.errors",
        "ExportMiddleware": "llm_obs_middleware.middleware.export",
        "ExportPipeline": "llm_obs_middleware.exporters.pipeline.export_pipeline",
        "ExportersConfig": "llm_obs_middleware.config.settings",
        "Gateway": "llm_obs_middleware.gateway.standalone",
        "LLMObsError": "llm_obs_middleware.errors",
        "LLMObservability": "llm_obs_middleware.middleware.stack",
        "LLMRecord": "llm_obs_middleware.records.schema",
        "LogStoreConfig": "llm_obs_middleware.config.settings",
        "MissingDependencyError": "llm_obs_middleware.errors",
        "ModelRoute": "llm_obs_middleware.config.settings",
        "NormalizedRequest": "llm_obs_middleware.records.schema",
        "NormalizedResponse": "llm_obs_middleware.records.schema",
        "OTLPConfig": "llm_obs_middleware.config.settings",
        "PermanentExportError": "llm_obs_middleware.errors",
        "PriceOverride": "llm_obs_middleware.config.settings",
        "PricingConfig": "llm_obs_middleware.config.settings",
        "PrometheusConfig": "llm_obs_middleware.config.settings",
        "ProviderConfig": "llm_obs_middleware.config.settings",
        "ProviderError": "llm_obs_middleware.errors",
        "RetryableExportError": "llm_obs_middleware.errors",
        "RouterMiddleware": "llm_obs_middleware.routing.middleware",
        "SchemaError": "llm_obs_middleware.errors",
        "Secret": "llm_obs_middleware.config.settings",
        "TimeoutConfig": "llm_obs_middleware.config.settings",
        "Timing": "llm_obs_middleware.records.schema",
        "TraceContextConfig": "llm_obs_middleware.config.settings",
        "TraceContextMiddleware": "llm_obs_middleware.middleware.tracecontext",
        "UnknownProviderError": "llm_obs_middleware.errors",
        "UpstreamConnectError": "llm_obs_middleware.errors",
        "UpstreamError": "llm_obs_middleware.errors",
        "UpstreamProtocolError": "llm_obs_middleware.errors",
        "UpstreamTimeout": "llm_obs_middleware.errors",
        "Usage": "llm_obs_middleware.records.schema",
        "create_gateway": "llm_obs_middleware.gateway.standalone",
    },
)
