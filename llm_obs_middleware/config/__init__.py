"""Configuration: frozen msgspec Structs, loaded from a dict, a YAML/JSON file or the environment."""

from __future__ import annotations

from llm_obs_middleware.config.settings import (
    PROVIDER_KINDS,
    ApiKey,
    Config,
    Deployment,
    ExportersConfig,
    JSONLConfig,
    LogStoreConfig,
    ModelRoute,
    OTLPConfig,
    PriceOverride,
    PricingConfig,
    PrometheusConfig,
    ProviderConfig,
    QueueConfig,
    RedactConfig,
    RoutingConfig,
    Secret,
    TimeoutConfig,
    TraceContextConfig,
)

__all__ = [
    "PROVIDER_KINDS",
    "ApiKey",
    "Config",
    "Deployment",
    "ExportersConfig",
    "JSONLConfig",
    "LogStoreConfig",
    "ModelRoute",
    "OTLPConfig",
    "PriceOverride",
    "PricingConfig",
    "PrometheusConfig",
    "ProviderConfig",
    "QueueConfig",
    "RedactConfig",
    "RoutingConfig",
    "Secret",
    "TimeoutConfig",
    "TraceContextConfig",
]
