"""The gateway mounted under ``/ai`` inside a bigger Starlette app.

Run (with ``llm-obs fake-provider --port 9100`` in another shell)::

    uvicorn sample_apps.mounted_app:app --port 8000

The openai SDK works with ``base_url="http://127.0.0.1:8000/ai/v1"``; metrics are at ``/ai/metrics``
and the request log at ``/ai/logs``. Starlette does not forward lifespan to mounted apps, so the parent
app passes ``lifespan=gateway.lifespan``: that starts the exporters and flushes them at shutdown.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from llm_obs_middleware import Config, create_gateway

gateway = create_gateway(
    Config.from_dict(
        {
            "providers": {
                "openai": {
                    "kind": "openai",
                    "base_url": os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9100/v1"),
                    "api_keys": [os.environ.get("OPENAI_API_KEY", "sk-fake")],
                }
            },
            "models": {"gpt-4o-mini": {"provider": "openai"}, "gpt-4o": {"provider": "openai"}},
            "exporters": {"log_store": {"url": "sqlite:///mounted_app_llm.db"}},
        }
    )
)


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"llm_gateway": str(request.url_for("ai", path="/v1"))})


app = Starlette(routes=[Route("/", home), Mount("/ai", app=gateway, name="ai")], lifespan=gateway.lifespan)
