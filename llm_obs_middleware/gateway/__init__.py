"""The standalone gateway: ``create_gateway()``, the app ``uvicorn llm_obs_middleware.gateway:app`` runs,
the admin routes, the ``llm-obs`` command line and its demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware._lazy import lazy_attributes

if TYPE_CHECKING:
    from llm_obs_middleware.gateway.standalone import Gateway, app, create_gateway

__all__ = ["Gateway", "app", "create_gateway"]

__getattr__, __dir__ = lazy_attributes(__name__, dict.fromkeys(__all__, "llm_obs_middleware.gateway.standalone"))
