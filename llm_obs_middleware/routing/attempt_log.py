"""One console line per failed upstream attempt (``llm-obs serve`` shows it; see ``_logging``).

Written only on failures, so the request path pays nothing when upstreams answer; the line holds
names the config chose or bounded ones (provider, deployment, key name) and our own error type:
never a key, a prompt or the upstream's error text.
"""

from __future__ import annotations

import logging

from llm_obs_middleware._log_fields import FIELDS_ATTR
from llm_obs_middleware.records.schema import Attempt

__all__ = ["log_failed_attempt"]

logger = logging.getLogger("llm_obs_middleware.routing")


def log_failed_attempt(attempt: Attempt, *, error: str | None = None, latency_s: float | None = None) -> None:
    """Log ``attempt`` at warning level, with its fields: one that did not reach the client, or (with
    ``error`` and ``latency_s``) one whose answer broke off after it had started."""
    if not logger.isEnabledFor(logging.WARNING):
        return
    error = error or attempt.error_type
    latency_ms = round((latency_s if latency_s is not None else attempt.latency_s or 0.0) * 1000, 1)
    fields = {
        "event": "upstream_attempt_failed",
        "provider": attempt.provider,
        "deployment": attempt.deployment,
        "key": attempt.key_id,
        "status": attempt.status,
        "error": error,
        "latency_ms": latency_ms,
    }
    logger.warning(
        "upstream attempt failed: provider=%s deployment=%s key=%s status=%s error=%s latency_ms=%s",
        attempt.provider,
        attempt.deployment,
        attempt.key_id,
        attempt.status,
        error,
        latency_ms,
        extra={FIELDS_ATTR: fields},
    )
