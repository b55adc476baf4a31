"""llm_obs_middleware: observability for every LLM request that crosses an ASGI service."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
