"""Routing configuration: provider key pools, model aliases with weighted deployments and fallbacks,
and the retry policy. Re-exported by :mod:`llm_obs_middleware.config.settings`."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llm_obs_middleware.errors import ConfigurationError

__all__ = ["ApiKey", "Deployment", "ModelRoute", "RoutingConfig", "decode_api_key"]

_MAX_AUTH_COOLDOWN_S = 86_400.0  # a refused key is retried at least daily


class ApiKey:
    """A provider key: a secret that never shows itself, its weight in the pool and a stable name.

    In config an entry is either the key itself (``"${OPENAI_API_KEY}"``) or
    ``{key: ..., weight: N, name: ...}``. The name (default ``<provider>#<index>``) is what records,
    spans, metrics and ``/health/deployments`` show; the key itself never leaves the process.
    """

    __slots__ = ("_value", "name", "weight")
    config_fields = ("key", "weight", "name")
    """The fields of the mapping form (named in config errors' did-you-mean)."""

    def __init__(self, value: str, *, weight: float = 1.0, name: str | None = None) -> None:
        self._value = value
        self.weight = weight
        self.name = name

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey('**********', weight={self.weight:g}, name={self.name!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and (other._value, other.weight, other.name) == (
            self._value,
            self.weight,
            self.name,
        )

    def __hash__(self) -> int:
        return hash((self._value, self.weight, self.name))


def decode_api_key(obj: Any) -> ApiKey:
    """msgspec ``dec_hook`` for :class:`ApiKey` (a string, or a mapping with ``key``/``weight``/``name``).

    Raises ``ValueError``, which msgspec reports with the path of the entry (a ``ValidationError``
    raised here would lose it)."""
    if isinstance(obj, ApiKey):
        return obj
    if isinstance(obj, str):
        return ApiKey(obj)
    if isinstance(obj, dict):
        unknown = set(obj) - set(ApiKey.config_fields)
        if unknown:
            raise ValueError(f"Object contains unknown field `{sorted(unknown)[0]}`")
        key, weight, name = obj.get("key"), obj.get("weight", 1.0), obj.get("name")
        if not isinstance(key, str) or not key:
            raise ValueError("Object missing required field `key` (a non-empty string)")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise ValueError("`weight` must be a positive number")
        if name is not None and not isinstance(name, str):
            raise ValueError("`name` must be a string")
        return ApiKey(key, weight=float(weight), name=name)
    raise ValueError("Expected `str` or an object `{key, weight, name}`")


class Deployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One place a model alias can be served."""

    provider: str
    """Name of a configured provider."""
    model: str | None = None
    """Model sent upstream (defaults to the alias)."""
    weight: float = 1.0
    """Share of traffic under the ``weighted`` strategy."""

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ConfigurationError(f"weight: must be positive, got {self.weight}")


class ModelRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model name clients may ask for: one provider (shorthand) or several weighted deployments."""

    provider: str | None = None
    """Shorthand for a single deployment on this provider."""
    model: str | None = None
    """With ``provider``: the model sent upstream (defaults to the alias)."""
    deployments: list[Deployment] = []
    """Where the alias is served; one is picked per attempt by ``strategy``."""
    strategy: Literal["weighted", "latency", "least_busy"] = "weighted"
    """``weighted`` (random by weight), ``latency`` (lowest recent time to first token) or ``least_busy``."""
    fallbacks: list[str] = []
    """Aliases tried in order when every deployment of this one failed."""
    unsupported_params: Literal["drop", "error"] | None = None
    """When an OpenAI request is translated for a provider lacking one of its parameters: ``drop`` it
    (named in the ``x-llm-obs-dropped-params`` response header) or ``error`` (400). Default:
    ``routing.unsupported_params``."""

    def __post_init__(self) -> None:
        if (self.provider is None) == (not self.deployments):
            raise ConfigurationError("set either provider (one deployment) or deployments, not both or neither")
        if self.deployments and self.model is not None:
            raise ConfigurationError("model belongs on each deployment when deployments are listed")

    def targets(self) -> list[Deployment]:
        """The deployments, the shorthand included."""
        if self.provider is not None:
            return [Deployment(provider=self.provider, model=self.model)]
        return self.deployments


class RoutingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retries, backoff and per-request overrides."""

    retries: int = 2
    """Extra attempts per alias after the first (other keys/deployments first, then the same again)."""
    backoff_base_s: float = 0.25
    """First backoff; doubled per retry, with full jitter."""
    backoff_cap_s: float = 8.0
    """Longest backoff between two attempts."""
    max_retry_after_s: float = 30.0
    """The longest cooldown a provider's ``Retry-After`` sets on a key (longer values, ``inf`` and far-off
    dates are clamped to it), and the longest a request waits for one; a longer ``Retry-After`` is not
    waited for: the next key, deployment or fallback is tried, else the client gets the provider's answer."""
    cooldown_s: float = 30.0
    """How long a key or deployment is skipped after a 429 without ``Retry-After`` or repeated failures."""
    allow_request_overrides: bool = False
    """Honour ``x-llm-obs-provider``, ``x-llm-obs-no-fallbacks`` and ``x-llm-obs-timeout`` request headers."""
    unsupported_params: Literal["drop", "error"] = "drop"
    """Translated requests: ``drop`` or reject (``error``) an OpenAI parameter the provider lacks
    (``models.*.unsupported_params`` overrides it per alias)."""
    auth_cooldown_s: float = 300.0
    """How long a key the provider refused (401/403) is skipped before it is tried again. Longer than a
    429's cooldown, never for good: a refusal caused by one request must not take the key away."""
    forward_headers: list[str] = []
    """Client headers that would change the upstream identity or routing, withheld by default, to forward
    anyway: ``OpenAI-Organization``, ``OpenAI-Project``, ``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``,
    ``X-Amz-Security-Token`` (credentials, ``Proxy-Authorization`` and hop-by-hop headers never are)."""
    max_connections: int = 4096
    """Upstream requests in flight at once (the size of the shared connection pool): one per streaming
    response for as long as it lasts."""
    pool_wait_s: float = 1.0
    """How long a request waits for a free upstream connection when all ``max_connections`` are busy,
    before the gateway sheds it with ``503`` and ``Retry-After`` (no deployment or key is blamed)."""

    def __post_init__(self) -> None:
        durations = (self.backoff_base_s, self.backoff_cap_s, self.max_retry_after_s, self.pool_wait_s)
        if self.retries < 0 or min(durations) < 0:
            raise ConfigurationError("routing: retries and durations must be >= 0")
        if not 0 <= self.cooldown_s <= self.auth_cooldown_s <= _MAX_AUTH_COOLDOWN_S:
            raise ConfigurationError(
                f"routing: need 0 <= cooldown_s <= auth_cooldown_s <= {_MAX_AUTH_COOLDOWN_S:g} "
                f"(got {self.cooldown_s:g} and {self.auth_cooldown_s:g})"
            )
        if self.max_connections < 1:
            raise ConfigurationError("routing.max_connections: must be at least 1")
